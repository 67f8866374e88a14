"""The user-facing spec: strict, frozen pydantic models (the only place pydantic meets YAML).

Op items are generated from the op registry, one model per op, discriminated on `op`. Attribute
values may be `${...}` expressions, so here they are only checked for presence and spelling;
their types are checked after expansion against the op's attribute dataclass.
"""

from __future__ import annotations

import dataclasses
import typing
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, create_model

from .ops import OpDef, load_all

if TYPE_CHECKING:
    Item = Any  # the discriminated union of items, bound to the op registry in spec_model()

SPEC_VERSION = 1
PARAM_TYPES = ("int", "float", "bool", "str", "list[int]", "list[float]", "list[str]")
RESERVED_REFS = ("prev", "input")

Expr = Annotated[str, Field(pattern=r"\$\{", description="a ${...} expression")]
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


def _op_item_model(op: OpDef, typed: bool) -> type[BaseModel]:
    fields: dict[str, Any] = {"op": (Literal[op.name], ...)}
    hints = typing.get_type_hints(op.attrs, include_extras=True) if typed else {}
    for f in op.user_fields:
        has_default = f.default is not dataclasses.MISSING
        tp: Any = Union[hints[f.name], Expr] if typed else Any  # noqa: UP007
        fields[f.name] = (tp, f.default if has_default else ...)
    fields["trainable"] = (bool | Expr, True)
    name = "".join(p.title() for p in op.name.split("_")) + "Item"
    model = create_model(name, __base__=_ItemBase, __doc__=op.doc or None, **fields)
    return model


@cache
def item_union(typed: bool = False) -> Any:
    ops = [op for name, op in sorted(load_all().items()) if name != "input"]
    members = [Annotated[_op_item_model(op, typed), Tag(f"op:{op.name}")] for op in ops]
    members += [Annotated[BlockCall, Tag("call")], Annotated[Repeat, Tag("loop")]]
    return Annotated[Union[tuple(members)], Discriminator(_item_tag)]  # noqa: UP007


class Spec(_Strict):
    """A whole architecture spec (one YAML file)."""

    archc: Literal[1] = Field(description="spec format version")
    name: str
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
    Item = item_union(False)
    for _model in (Repeat, BlockDef, Spec):
        _model.model_rebuild()


def spec_model(typed: bool = False) -> type[Spec]:
    """The Spec model (typed=True: a copy whose op attributes carry their types, for the
    JSON Schema; validation types them after expansion, when expressions are resolved)."""
    return _typed_spec() if typed else Spec


@cache
def _typed_spec() -> type[Spec]:
    typed_item = item_union(True)
    members = typed_item.__origin__.__args__[:-1]  # all but the untyped Repeat
    typed_repeat = create_model("Repeat", __base__=Repeat, body=(list[typed_item], ...))
    item = Annotated[
        Union[(*members, Annotated[typed_repeat, Tag("loop")])],
        Discriminator(_item_tag),
    ]
    typed_block = create_model("BlockDef", __base__=BlockDef, body=(list[item], ...))
    return create_model(
        "Spec",
        __base__=Spec,
        blocks=(dict[str, typed_block], {}),
        layers=(list[item], ...),
    )


def json_schema() -> dict[str, Any]:
    schema = spec_model(typed=True).model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "archc spec"
    return schema
