"""Op attributes: which values an item gives (per-op defaults, then its own), and checking the
rendered values against the op's attribute model, with messages in a user's words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from .diagnostics import short_repr
from .ops import OpDef, describe, field_types
from .yaml_loader import PathKey


def given_attributes(
    item: BaseModel, opdef: OpDef, defaults: Mapping[str, Mapping[str, Any]], where: PathKey
) -> dict[str, tuple[Any, PathKey]]:
    """attribute -> (spec value, where it was written): `defaults:` for the op, overridden by
    the item's own keys."""
    user = {f.name for f in opdef.user_fields}
    given: dict[str, tuple[Any, PathKey]] = {
        key: (value, ("defaults", opdef.name, key))
        for key, value in defaults.get(opdef.name, {}).items()
        if key in user
    }
    for key in item.model_fields_set & user:
        given[key] = (getattr(item, key), (*where, key))
    return given


def validate_attributes(
    opdef: OpDef, resolved: dict[str, Any]
) -> tuple[Any, list[tuple[str, str, str]]]:
    """(the attribute object, []) or (None, [(attribute, message, hint), ...])."""
    try:
        return opdef.adapter().validate_python(resolved), []
    except ValidationError as exc:
        types = field_types(opdef.attrs)
        problems: list[tuple[str, str, str]] = []
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            got = resolved.get(key)
            what = describe(types[key]) if key in types else ""
            msg = f"{err['msg'][0].lower()}{err['msg'][1:]}"
            if err["type"] in ("too_long", "too_short") and "[height, width]" in what:
                msg = f"expected 2 values [height, width], got {len(got or ())}"
            if not key:  # a rule between attributes (the attribute class's __post_init__)
                rule = msg.removeprefix("value error, ")
                problems.append((key, f"invalid {opdef.name}: {rule}", ""))
                continue
            hint = f"'{key}' of {opdef.name}: {what}" if what else ""
            problems.append((key, f"invalid {opdef.name}.{key} {short_repr(got)}: {msg}", hint))
        return None, problems
