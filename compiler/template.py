"""Templates: strings with `${...}` expressions ('bn${stage}a', '${filters * 4}')."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .diagnostics import short_repr
from .expr import MAX_TOTAL, TOO_BIG, ExprError, evaluate, type_name, value_size


def split_template(text: str) -> list[tuple[bool, str]]:
    """Split 'bn${stage}a' into [(False, 'bn'), (True, 'stage'), (False, 'a')]."""
    parts: list[tuple[bool, str]] = []
    i = 0
    while True:
        start = text.find("${", i)
        if start < 0:
            if i < len(text):
                parts.append((False, text[i:]))
            return parts
        if start > i:
            parts.append((False, text[i:start]))
        depth, j, quote = 0, start + 2, ""
        while j < len(text):
            ch = text[j]
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "'\"":
                quote = ch
            elif ch == "}" and depth <= 0:
                break
            elif ch in "[({":
                depth += 1
            elif ch in "])}":
                depth -= 1
            j += 1
        else:
            raise ExprError(
                f"unclosed '${{' in {short_repr(text)}", hint="close the expression with '}'"
            )
        parts.append((True, text[start + 2 : j]))
        i = j + 1


def is_template(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def render(value: Any, env: Mapping[str, Any]) -> Any:
    """Resolve templates in a value: '${x}' keeps x's type, 'a${x}b' gives a string.

    Lists are resolved element by element; other values are returned as they are. What the
    expressions build for one value is bounded in total (MAX_TOTAL items and characters).
    """
    return _render(value, env, [0])


def _render(value: Any, env: Mapping[str, Any], used: list[int]) -> Any:
    if isinstance(value, list):
        return [_render(v, env, used) for v in value]
    if not is_template(value):
        return value
    parts = split_template(value)
    if len(parts) == 1 and parts[0][0]:
        result = evaluate(parts[0][1], env)
        _charge(used, value_size(result))
        return result
    out = []
    for is_expr, text in parts:
        if not is_expr:
            out.append(text)
            continue
        v = evaluate(text, env)
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise ExprError(
                f"cannot insert {type_name(v)} into text {short_repr(value)}",
                hint="only numbers and strings can be interpolated into names",
            )
        out.append(str(v))
        _charge(used, len(out[-1]))
    return "".join(out)


def _charge(used: list[int], size: int) -> None:
    used[0] += size
    if used[0] > MAX_TOTAL:
        raise ExprError(TOO_BIG)
