"""YAML file -> validated Spec, with pydantic errors mapped back to file:line:col."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .diagnostics import Diagnostic, SpecError, did_you_mean, short_repr
from .ops import load_all
from .schema import ITEM_KEYS, PATTERN_MEANING, Spec, ops_named, spec_model
from .yaml_loader import Document, PathKey, load_file, load_text


@dataclass(frozen=True)
class LoadedSpec:
    doc: Document
    spec: Spec

    @property
    def file(self) -> str:
        return self.doc.file


def load(path: str | Path) -> LoadedSpec:
    return validate(load_file(path))


def loads(text: str, file: str = "<string>") -> LoadedSpec:
    return validate(load_text(text, file))


def validate(doc: Document) -> LoadedSpec:
    if not isinstance(doc.data, dict):
        got = "an empty file" if doc.data is None else f"a {type(doc.data).__name__}"
        raise SpecError(
            [
                Diagnostic(
                    "E010",
                    f"a spec must be a mapping at the top level, got {got}",
                    doc.loc(()),
                    hint="start with 'archc: 1', 'name:', 'inputs:' and 'layers:'",
                )
            ]
        )
    missing = _missing_required(doc)
    model = spec_model(ops_named(doc.data))
    try:
        spec = model.model_validate(doc.data)
    except ValidationError as exc:
        raise SpecError(_sorted([*_diagnostics(exc, doc, model), *missing])) from None
    if missing:
        raise SpecError(missing)
    return LoadedSpec(doc, spec)


def _sorted(diags: list[Diagnostic]) -> list[Diagnostic]:
    """In the order of the file (diagnostics without a place first)."""

    def key(d: Diagnostic) -> tuple[int, int]:
        return (d.location.line, d.location.col) if d.location is not None else (0, 0)

    return sorted(diags, key=key)


def _missing_required(doc: Document) -> list[Diagnostic]:
    """Required op attributes that neither the item nor the spec's `defaults:` for its op give
    (E011): an item may leave a required attribute to `defaults:` (e.g. every activation's
    `fn`). Read from the raw document, so these are reported beside any schema error."""
    ops = load_all()
    data = doc.data if isinstance(doc.data, dict) else {}
    raw_defaults = data.get("defaults")
    defaults = raw_defaults if isinstance(raw_defaults, dict) else {}
    out = []

    def items(seq: Any, path: PathKey) -> None:
        if not isinstance(seq, list):
            return
        for i, item in enumerate(seq):
            if not isinstance(item, dict):
                continue
            where = (*path, i)
            if isinstance(item.get("body"), list):
                items(item["body"], (*where, "body"))
            op = ops.get(item["op"]) if isinstance(item.get("op"), str) else None
            if op is None:
                continue
            given = defaults.get(op.name)
            supplied = set(given) if isinstance(given, dict) else set()
            need = f" ('{op.name}' requires: {', '.join(sorted(op.required))})"
            known = {f.name for f in op.user_fields} | set(ITEM_KEYS)
            unknown = [k for k in item if isinstance(k, str) and k not in known]
            for key in sorted(op.required - set(item) - supplied):
                if any(did_you_mean(k, [key]) for k in unknown):
                    continue  # a misspelt key: reported once, as unknown, with "did you mean"
                out.append(
                    Diagnostic(
                        "E011",
                        f"missing required key '{key}'{_owner(data, where)}",
                        doc.loc(where),
                        hint=f"add '{key}: ...'{need}, or give it in defaults: {op.name}:",
                    )
                )

    items(data.get("layers"), ("layers",))
    blocks = data.get("blocks")
    for name, block in blocks.items() if isinstance(blocks, dict) else ():
        if isinstance(block, dict):
            items(block.get("body"), ("blocks", name, "body"))
    return out


def _walk(data: Any, loc: tuple[Any, ...]) -> tuple[PathKey, tuple[Any, ...]]:
    """Split a pydantic loc into the part that exists in the data and the rest."""
    path: list[str | int] = []
    rest: list[Any] = []
    node = data
    for comp in loc:
        in_dict = isinstance(node, dict) and isinstance(comp, str) and comp in node
        in_list = isinstance(node, list) and isinstance(comp, int) and 0 <= comp < len(node)
        if in_dict or in_list:
            path.append(comp)
            node = node[comp]  # type: ignore[index]
        else:
            rest.append(comp)
    return tuple(path), tuple(rest)


def _unwrap(ann: Any) -> list[Any]:
    """The model classes an annotation may stand for, following containers by one step."""
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(ann)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(ann) for m in _unwrap(a)]
    return [ann]


_TAGS = {("call", "BlockCall"), ("loop", "Repeat"), ("apply", "Apply")}


def _model_at(loc: tuple[Any, ...], spec: type[Spec]) -> type[BaseModel] | None:
    """Follow a pydantic loc (which includes union tags) through the spec's model."""
    current: list[Any] = [spec]
    for comp in loc:
        nxt: list[Any] = []
        for ann in current:
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                if isinstance(comp, str) and comp in ann.model_fields:
                    nxt += _unwrap(ann.model_fields[comp].annotation)
            elif typing.get_origin(ann) in (list, dict):
                nxt += _unwrap(typing.get_args(ann)[-1])
        if not nxt:  # comp is a union tag: pick the member it names
            for ann in current:
                tag = getattr(ann, "model_fields", {}).get("op")
                if (tag is not None and comp == f"op:{tag.annotation.__args__[0]}") or (
                    isinstance(ann, type) and (comp, ann.__name__) in _TAGS
                ):
                    nxt = [ann]
        current = nxt
    models = [m for m in current if isinstance(m, type) and issubclass(m, BaseModel)]
    return models[0] if len(models) == 1 else None


def _allowed(loc: tuple[Any, ...], spec: type[Spec]) -> list[str]:
    model = _model_at(loc, spec)
    return list(model.model_fields) if model else []


def _describe(value: Any) -> str:
    return short_repr(value, 60)


def _diagnostics(exc: ValidationError, doc: Document, spec: type[Spec]) -> list[Diagnostic]:
    grouped: dict[PathKey, list[Any]] = {}
    out: list[Diagnostic] = []
    errors = exc.errors()
    unknown: dict[PathKey, list[str]] = {}  # parent path -> unknown keys found there
    for err in errors:
        if err["type"] == "extra_forbidden":
            path, _ = _walk(doc.data, tuple(err["loc"]))
            unknown.setdefault(path[:-1], []).append(str(path[-1]))
    for err in errors:
        loc = tuple(err["loc"])
        path, rest = _walk(doc.data, loc)
        kind = err["type"]
        if kind == "missing":
            field = str(rest[-1]) if rest else "?"
            if any(did_you_mean(k, [field]) for k in unknown.get(path, [])):
                continue  # a misspelt key: reported once, as unknown, with "did you mean"
            raw = _at(doc.data, path)
            op_name = raw.get("op") if isinstance(raw, dict) else None
            op = load_all().get(op_name) if isinstance(op_name, str) else None
            need = f" ('{op.name}' requires: {', '.join(sorted(op.required))})" if op else ""
            out.append(
                Diagnostic(
                    "E011",
                    f"missing required key '{field}'{_owner(doc.data, path)}",
                    doc.loc(path),
                    hint=f"add '{field}: ...'{need}",
                )
            )
        elif kind == "extra_forbidden":
            key = str(path[-1]) if path else "?"
            allowed = [k for k in _allowed(loc[:-1], spec) if k != "op"]
            guess = did_you_mean(key, allowed)
            listing = "allowed keys: " + ", ".join(allowed) if allowed else ""
            out.append(
                Diagnostic(
                    "E012",
                    f"unknown key '{key}'{_owner(doc.data, path[:-1])}",
                    doc.loc(path, key=True),
                    hint=f"{guess} ({listing})" if guess else listing,
                )
            )
        elif kind == "union_tag_invalid":
            tag = str(err["ctx"]["tag"]).removeprefix("op:")
            ops = [o for o in load_all() if o != "input"]
            guess = did_you_mean(tag, ops)
            hint = f"{guess} " if guess else ""
            if tag == "input":
                hint = "graph inputs are declared under 'inputs:'; "
            out.append(
                Diagnostic(
                    "E013",
                    f"unknown op '{tag}'",
                    doc.loc((*path, "op")),
                    hint=hint + "(ops: " + ", ".join(sorted(ops)) + ")",
                )
            )
        elif kind == "union_tag_not_found":
            raw = _at(doc.data, path)
            what = (
                f"got a {type(raw).__name__} {_describe(raw)}"
                if not isinstance(raw, dict)
                else "found none of 'op', 'block' or 'repeat'"
            )
            out.append(
                Diagnostic(
                    "E014",
                    f"a layer item must be a mapping with 'op', 'block' or 'repeat': {what}",
                    doc.loc(path),
                    hint="for example {op: conv2d, filters: 64, kernel: 3}",
                )
            )
        else:
            grouped.setdefault(path, []).append(err)
    for path, errs in grouped.items():
        value = _at(doc.data, path)
        key = next((str(p) for p in reversed(path) if isinstance(p, str)), "value")
        hint = ""
        if errs[0]["type"] == "model_type" and _is_declaration(path):
            name = str(path[-1])
            message = (
                f"invalid parameter '{name}' {_describe(value)}: expected a mapping "
                "with 'type' and 'default'"
            )
            hint = (
                f"for example {name}: {{type: {_param_type(value)}, default: {short_repr(value)}}}"
            )
        elif len(errs) == 1:
            message = f"invalid {key} {_describe(value)}: {_message(errs[0])}"
        else:
            alternatives = list(dict.fromkeys(_alternative(e) for e in errs))
            listing = ", ".join(alternatives[:-1]) + " or " + alternatives[-1]
            message = f"invalid {key} {_describe(value)}: expected {listing}"
        out.append(Diagnostic("E015", message, doc.loc(path), hint=hint))
    return _sorted(out)


_ALTERNATIVES = {
    "bool_type": "true, false",
    "int_type": "an integer",
    "float_type": "a number",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


def _alternative(err: Any) -> str:
    """One member of a union, in words ("an integer", "a ${...} expression")."""
    tag = err["loc"][-1] if err["loc"] else ""
    if err["type"] in ("string_type", "string_pattern_mismatch"):
        return "a ${...} expression" if tag == "constrained-str" else "a string"
    return _ALTERNATIVES.get(err["type"], _message(err))


def _is_declaration(path: PathKey) -> bool:
    return (len(path) == 2 and path[0] == "params") or (
        len(path) == 4 and path[0] == "blocks" and path[2] == "args"
    )


def _param_type(value: Any) -> str:
    if isinstance(value, list):
        return "list[float]" if any(isinstance(v, float) for v in value) else "list[int]"
    return {bool: "bool", int: "int", float: "float"}.get(type(value), "str")


def _message(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "string_pattern_mismatch":
        pattern = str(err.get("ctx", {}).get("pattern", ""))
        return "expected " + PATTERN_MEANING.get(pattern, f"text matching {pattern}")
    return msg[0].lower() + msg[1:]


def _at(data: Any, path: PathKey) -> Any:
    for p in path:
        data = data[p]
    return data


def _owner(data: Any, path: PathKey) -> str:
    raw = _at(data, path)
    if isinstance(raw, dict) and path:  # an item of a layer list
        if isinstance(raw.get("op"), str):
            return f" in op '{raw['op']}'"
        if isinstance(raw.get("block"), str):
            return f" in call of block '{raw['block']}'"
    if path:
        return " in '" + ".".join(str(p) for p in path) + "'"
    return ""
