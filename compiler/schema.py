"""The user-facing spec: strict, frozen pydantic models (the only place pydantic meets YAML).

Op items are generated from the op registry, one model per op, discriminated on `op`. Attribute
values may be `${...}` expressions, so here they are only checked for presence and spelling;
their types are checked after expansion against the op's attribute dataclass.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    create_model,
    model_validator,
)

from .diagnostics import short_repr
from .ops import OpDef, load_all

if TYPE_CHECKING:
    Item = Any  # the discriminated union of items, bound to the op registry below

SPEC_VERSION = 1
RESERVED_REFS = ("prev", "input")

EXPR_PATTERN = r"\$\{"
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$"
PATTERN_MEANING = {
    EXPR_PATTERN: "a ${...} expression",
    NAME_PATTERN: "a letter, then up to 99 letters, digits, '_', '.' or '-'",
}
Expr = Annotated[str, Field(pattern=EXPR_PATTERN, description="a ${...} expression")]
Scalar = int | float | bool | str
RefList = Annotated[list[str], Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ParamDecl(_Strict):
    """A typed parameter (or block argument) with an optional default."""

    type: Literal["int", "float", "bool", "str", "list[int]", "list[float]", "list[str]"]
    default: Any = None
    doc: str = ""
    min: int | float | None = None
    max: int | float | None = None
    choices: list[Scalar] | None = None

    @model_validator(mode="after")
    def _bounds_fit_the_type(self) -> ParamDecl:
        numeric = self.type in ("int", "float", "list[int]", "list[float]")
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min and max apply to numbers, not to {self.type}")
        for bound in (self.min, self.max):
            if bound is not None and not math.isfinite(bound):
                raise ValueError("min and max must be finite numbers")
        if self.choices is not None:
            if self.type.startswith("list["):
                raise ValueError(f"choices apply to single values, not to {self.type}")
            kinds = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}
            for choice in self.choices:
                ok = isinstance(choice, kinds[self.type])
                if ok and self.type in ("int", "float"):
                    ok = not isinstance(choice, bool)
                if not ok:
                    raise ValueError(f"choice {short_repr(choice)} is not of type {self.type}")
        return self


class Expect(_Strict):
    """Parameter counts the compiled model must have."""

    total: Annotated[int, Field(ge=0)] | None = None
    trainable: Annotated[int, Field(ge=0)] | None = None
    non_trainable: Annotated[int, Field(ge=0)] | None = None


class Variant(_Strict):
    """A named set of parameter values (a scale variant), with its own expected counts."""

    params: dict[str, Any] = {}
    expect: Expect | None = None
    doc: str = ""


class InputDecl(_Strict):
    name: str
    shape: list[int | Expr] | Expr


class _ItemBase(_Strict):
    name: str | None = None
    inputs: str | RefList | None = None
    when: bool | Expr | None = None
    id: str | None = None


class BlockCall(_ItemBase):
    """Call a reusable block: `{block: NAME, args: {...}}`."""

    block: str
    args: dict[str, Any] = {}


class Repeat(_ItemBase):
    """Repeat a body `repeat` times, binding the loop variable `var` (from `start`)."""

    repeat: int | Expr
    var: str = "i"
    start: int = 0
    body: list[Item]


class BlockDef(_Strict):
    args: dict[str, ParamDecl] = {}
    body: Annotated[list[Item], Field(min_length=1)]
    doc: str = ""


def _item_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        if "op" in value:
            return f"op:{value['op']}"
        if "block" in value:
            return "call"
        if "repeat" in value:
            return "loop"
        return None
    if isinstance(value, BaseModel):
        op = getattr(value, "op", None)
        return f"op:{op}" if op else ("call" if isinstance(value, BlockCall) else "loop")
    return None


def _item_model_name(op: OpDef) -> str:
    return "".join(p.title() for p in op.name.split("_")) + "Item"


def _op_item_model(op: OpDef) -> type[BaseModel]:
    """Attribute values may be expressions: here only their names and presence are checked."""
    fields: dict[str, Any] = {"op": (Literal[op.name], ...)}
    for f in op.user_fields:
        has_default = f.default is not dataclasses.MISSING
        fields[f.name] = (Any, f.default if has_default else ...)
    fields["trainable"] = (bool | Expr, True)
    return create_model(_item_model_name(op), __base__=_ItemBase, __doc__=op.doc or None, **fields)


def item_union() -> Any:
    ops = [op for name, op in sorted(load_all().items()) if name != "input"]
    members = [Annotated[_op_item_model(op), Tag(f"op:{op.name}")] for op in ops]
    members += [Annotated[BlockCall, Tag("call")], Annotated[Repeat, Tag("loop")]]
    return Annotated[Union[tuple(members)], Discriminator(_item_tag)]  # noqa: UP007


class Spec(_Strict):
    """A whole architecture spec (one YAML file)."""

    archc: Literal[1] = Field(description="spec format version")
    name: Annotated[
        str,
        Field(pattern=NAME_PATTERN, description="model name: " + PATTERN_MEANING[NAME_PATTERN]),
    ]
    doc: str = ""
    params: dict[str, ParamDecl] = {}
    variants: dict[str, Variant] = {}
    inputs: Annotated[list[InputDecl], Field(min_length=1)]
    defaults: dict[str, dict[str, Any]] = {}
    blocks: dict[str, BlockDef] = {}
    layers: Annotated[list[Item], Field(min_length=1)]
    outputs: RefList | None = None
    expect: Expect | None = None


if not TYPE_CHECKING:
    # Bind the forward references once, at import: every model is built exactly once.
    Item = item_union()
    for _model in (Repeat, BlockDef, Spec):
        _model.model_rebuild()


def json_schema() -> dict[str, Any]:
    """JSON Schema of the spec format, op attributes typed (each may also be an expression)."""
    from pydantic import TypeAdapter

    schema = Spec.model_json_schema()
    defs = schema["$defs"]
    for op in load_all().values():
        model = defs.get(_item_model_name(op))
        if model is None:
            continue
        hints = typing.get_type_hints(op.attrs, include_extras=True)
        for f in op.user_fields:
            typed = TypeAdapter(hints[f.name]).json_schema()
            prop = model["properties"][f.name]
            prop.update(
                anyOf=[typed, {"type": "string", "pattern": r"\$\{", "description": "expression"}]
            )
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "archc spec"
    return schema
