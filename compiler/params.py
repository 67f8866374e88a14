"""Typed parameters: defaults (which may refer to earlier parameters), variants, overrides."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from .diagnostics import Collector, Diagnostic, Location, did_you_mean, short_repr, shorten
from .expr import MAX_INT_BITS, ExprError
from .load import LoadedSpec
from .schema import ParamDecl
from .template import render


class ParamTypeError(Exception):
    pass


TOO_LARGE = f"integer too large (more than {MAX_INT_BITS} bits)"
_DIGITS = re.compile(r"\s*[-+]?[0-9]+\s*")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def coerce(value: Any, decl: ParamDecl) -> Any:
    """Check a value against a declared type; ints are accepted where floats are declared.
    Bounds apply to each element of a list."""
    t = decl.type
    if value is None:
        if decl.nullable:
            return None
        raise ParamTypeError(f"expected {t}, got null")
    if t.startswith("list["):
        if not isinstance(value, list | tuple):
            raise ParamTypeError(f"expected {t}, got {_kind(value)} {short_repr(value)}")
        inner = decl.model_copy(update={"type": t[5:-1]})
        return [coerce(v, inner) for v in value]
    if t == "int" and not _is_int(value):
        raise ParamTypeError(f"expected int, got {_kind(value)} {short_repr(value)}")
    if t == "int" and value.bit_length() > MAX_INT_BITS:
        raise ParamTypeError(TOO_LARGE)
    if t == "float":
        if not (_is_int(value) or isinstance(value, float)):
            raise ParamTypeError(f"expected float, got {_kind(value)} {short_repr(value)}")
        try:
            value = float(value)
        except OverflowError:
            raise ParamTypeError("the integer is too large for a float") from None
        if not math.isfinite(value):
            raise ParamTypeError(f"expected a finite float, got {short_repr(value)}")
    if t == "bool" and not isinstance(value, bool):
        raise ParamTypeError(f"expected bool, got {_kind(value)} {short_repr(value)}")
    if t == "str" and not isinstance(value, str):
        raise ParamTypeError(f"expected str, got {_kind(value)} {short_repr(value)}")
    if decl.min is not None and value < decl.min:
        raise ParamTypeError(f"{short_repr(value)} is below the minimum {decl.min}")
    if decl.max is not None and value > decl.max:
        raise ParamTypeError(f"{short_repr(value)} is above the maximum {decl.max}")
    if decl.choices is not None and value not in decl.choices:
        raise ParamTypeError(f"{short_repr(value)} is not one of {short_repr(decl.choices)}")
    return value


def _kind(v: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list"}.get(
        type(v), type(v).__name__
    )


def _int(text: str) -> int:
    if _DIGITS.fullmatch(text) and len(text.strip().lstrip("+-").lstrip("0")) > MAX_INT_BITS:
        raise ParamTypeError(TOO_LARGE)  # also past Python's limit on int(str)
    return int(text)


def parse_text(text: str, decl: ParamDecl) -> Any:
    """Read a command-line value by the parameter's declared type."""
    t = decl.type
    if text.strip() == "null" and (decl.nullable or t != "str"):  # "null" is a str's text
        return coerce(None, decl)
    try:
        if t == "int":
            return coerce(_int(text), decl)
        if t == "float":
            return coerce(float(text), decl)
        if t == "bool":
            low = text.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ParamTypeError(f"expected true or false, got {short_repr(text)}")
            return coerce(low in ("true", "1", "yes"), decl)
        if t == "str":
            return coerce(text, decl)
        return coerce(json.loads(text), decl)
    except ValueError as exc:
        if "integer string conversion" in str(exc):  # a JSON integer of over 4300 digits
            raise ParamTypeError(TOO_LARGE) from None
        raise ParamTypeError(f"expected {t}, got {short_repr(text)}") from None


def _set_text(name: str, text: Any) -> str:
    """Where a --set value came from, as the user wrote it (the value cut to 40 characters)."""
    return f"--set {name}={shorten(str(text), 40)}"


def _hint(name: str, decl: ParamDecl, raw: Any, src: str) -> str:
    """How to give parameter `name` a value: its declaration (type and bounds); for a list
    given on the command line without brackets, the --set that reads it."""
    bounds = [
        f"{k}: {short_repr(getattr(decl, k))}" for k in _BOUNDS if getattr(decl, k) is not None
    ]
    declared = f"parameter '{name}' is declared as {', '.join([decl.type, *bounds])}"
    if raw is None or (src == "--set" and str(raw).strip() == "null"):
        return f"{declared}; a parameter may be null where its default is null (default: null)"
    if src != "--set" or not decl.type.startswith("list[") or str(raw).lstrip().startswith("["):
        return declared
    items = str(raw).split(",")
    given = [x.strip() for x in items] if decl.type == "list[str]" else f"[{raw}]"
    try:  # 16,32,64 -> [16,32,64], where that is a valid value
        value = coerce(json.loads(given) if isinstance(given, str) else given, decl)
        return f"{declared}; a list is written in brackets: --set {name}={_json(value)}"
    except (ValueError, ParamTypeError):
        example = decl.default if isinstance(decl.default, list) else None
        shown = _json(example) if example is not None else "[...]"
        return f"{declared}; a list is written in brackets, e.g. --set {name}={shown}"


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


_BOUNDS = ("min", "max", "choices")


def resolve(
    loaded: LoadedSpec,
    overrides: Mapping[str, Any] | None = None,
    *,
    variant: str | None = None,
    from_text: bool = False,
) -> dict[str, Any]:
    """Parameter values: defaults, then the variant's values, then explicit overrides."""
    spec, doc = loaded.spec, loaded.doc
    errors = Collector()
    given: dict[str, tuple[Any, Location | None, str]] = {}
    if variant is not None:
        if variant not in spec.variants:
            errors.add(
                Diagnostic(
                    "E021",
                    f"unknown variant '{variant}'",
                    hint=did_you_mean(variant, spec.variants)
                    or "variants: " + (", ".join(spec.variants) or "none declared"),
                )
            )
        else:
            for k, v in spec.variants[variant].params.items():
                given[k] = (v, doc.loc(("variants", variant, "params", k), key=True), "variant")
    for k, v in (overrides or {}).items():
        given[k] = (v, None, "--set" if from_text else "override")
    for k, (v, loc, src) in given.items():
        if k not in spec.params:
            errors.add(
                Diagnostic(
                    "E020",
                    f"{_set_text(k, v) if src == '--set' else src}: unknown parameter '{k}'",
                    loc,
                    hint=did_you_mean(k, spec.params)
                    or "parameters: " + (", ".join(spec.params) or "none declared"),
                )
            )
    values: dict[str, Any] = {}
    for name, decl in spec.params.items():
        if name in given:
            raw, loc, src = given[name]
            where = _set_text(name, raw) if src == "--set" else f"{src} {name}"
        else:
            raw, loc, src = decl.default, doc.loc(("params", name, "default")), "default"
            where = f"default of parameter '{name}'"
            if raw is None and decl.nullable:  # `default: null`: null unless given
                values[name] = None
                continue
            if raw is None:
                errors.add(
                    Diagnostic(
                        "E022",
                        f"parameter '{name}' has no default",
                        doc.loc(("params", name)),
                        hint="add 'default: ...' to its declaration ('default: null' for a "
                        "parameter that may be null)",
                    )
                )
                continue
        try:
            value = parse_text(raw, decl) if src == "--set" else render(raw, values)
            values[name] = coerce(value, decl)
        except ExprError as exc:
            hint = exc.hint
            if exc.name in spec.params and exc.name not in values:
                hint = (
                    f"'{exc.name}' is declared after '{name}'; a default may only use "
                    "parameters declared before it"
                )
            errors.add(Diagnostic("E030", f"{where}: {exc.message}", loc, hint=hint))
        except ParamTypeError as exc:
            errors.add(Diagnostic("E023", f"{where}: {exc}", loc, hint=_hint(name, decl, raw, src)))
    errors.raise_if_any()
    return values
