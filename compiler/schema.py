"""The user-facing spec: strict, frozen pydantic models (the only place pydantic meets YAML).

Op items are generated from the op registry, one model per op, discriminated on `op`. Attribute
values may be `${...}` expressions, so here they are only checked for presence and spelling;
their types are checked after expansion against the op's attribute dataclass.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import typing
from collections.abc import Iterable
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
    Item = Any  # the discriminated union of items: a spec's own ops (spec_model)

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
    # defer_build: a model's validator is built when it is first used on its own; the models
    # nested in a spec are checked by the spec model's validator (see spec_model)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


class ParamDecl(_Strict):
    """A typed parameter (or block argument) with an optional default."""

    type: Literal["int", "float", "bool", "str", "list[int]", "list[float]", "list[str]"]
    default: Any = None
    doc: str = ""
    min: int | float | None = None
    max: int | float | None = None
    choices: list[Scalar] | None = None

    @property
    def nullable(self) -> bool:
        """A parameter whose default is written `null` may be null (its default, `--set
        name=null`, a variant's null): an input size left open unless one is given."""
        return "default" in self.model_fields_set and self.default is None

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
    shape: list[int | Expr | None] | Expr  # null: a height or width unknown until run
    dtype: Literal["float", "int"] = "float"  # int: token ids (for embedding)


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


class Apply(_ItemBase):
    """Call an earlier layer again, on other inputs, with its weights (shared, counted once):
    `{apply: NAME}`. `reverse: true` on an embedding multiplies by its matrix transposed
    (a language model's output head tied to its token embedding)."""

    apply: str
    reverse: bool = False


class BlockDef(_Strict):
    args: dict[str, ParamDecl] = {}
    # names of the block's inputs, references in its body (the first is also `input`): a
    # call passes as many (inputs: [x, memory]); none declared: one input
    inputs: (
        Annotated[
            list[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]], Field(min_length=1)
        ]
        | None
    ) = None
    body: Annotated[list[Item], Field(min_length=1)]
    doc: str = ""

    @model_validator(mode="after")
    def _inputs_are_names(self) -> BlockDef:
        names = self.inputs or []
        if len(set(names)) != len(names):
            raise ValueError("the block's input names must differ")
        if set(names) & set(RESERVED_REFS):
            raise ValueError("'prev' and 'input' are references of their own, not input names")
        return self


def _item_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        if "op" in value:
            return f"op:{value['op']}"
        if "block" in value:
            return "call"
        if "repeat" in value:
            return "loop"
        if "apply" in value:
            return "apply"
        return None
    if isinstance(value, BaseModel):
        op = getattr(value, "op", None)
        if op:
            return f"op:{op}"
        if isinstance(value, Apply):
            return "apply"
        return "call" if isinstance(value, BlockCall) else "loop"
    return None


def _item_model_name(op: OpDef) -> str:
    return "".join(p.title() for p in op.name.split("_")) + "Item"


@functools.cache
def op_item_model(name: str) -> type[BaseModel]:
    """The item model of the op called name, built on first use.

    Attribute values may be expressions: here only their names are checked. A required
    attribute may come from `defaults:`, so its presence is checked with the spec's defaults
    in view (archc.compiler.load._missing_required); the JSON Schema still lists it as required."""
    op = load_all()[name]
    fields: dict[str, Any] = {"op": (Literal[op.name], ...)}
    for f in op.user_fields:
        has_default = f.default is not dataclasses.MISSING
        fields[f.name] = (Any, f.default if has_default else None)
    fields["trainable"] = (bool | Expr, True)
    return create_model(_item_model_name(op), __base__=_ItemBase, __doc__=op.doc or None, **fields)


def item_ops() -> list[str]:
    """The ops a layer item may name (graph inputs are declared under `inputs:`)."""
    return [name for name in sorted(load_all()) if name != "input"]


def ops_named(data: Any) -> frozenset[str]:
    """The registered ops that items anywhere in a raw spec document name: the ops whose
    item models its validator needs (an item naming another op is reported as unknown)."""
    known = set(item_ops())
    found: set[str] = set()
    todo = [data]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            op = node.get("op")
            if isinstance(op, str) and op in known:
                found.add(op)
            todo += node.values()
        elif isinstance(node, list):
            todo += node
    return frozenset(found)


def item_union(ops: Iterable[str], repeat: Any) -> Any:
    """Items (one model per op of `ops`, block calls, repeats) discriminated by their keys."""
    members = [Annotated[op_item_model(op), Tag(f"op:{op}")] for op in sorted(ops)]
    members += [Annotated[BlockCall, Tag("call")], Annotated[repeat, Tag("loop")]]
    members += [Annotated[Apply, Tag("apply")]]
    return Annotated[Union[tuple(members)], Discriminator(_item_tag)]  # noqa: UP007


class Spec(_Strict):
    """A whole architecture spec (one YAML file)."""

    archc: Literal[1] = Field(description="spec format version")
    name: Annotated[
        str,
        Field(pattern=NAME_PATTERN, description="model name: " + PATTERN_MEANING[NAME_PATTERN]),
    ]
    doc: str = ""
    auto_names: Literal["archc", "keras"] = Field(
        "archc",
        description="names of layers the spec leaves unnamed (or whose name template gives "
        "None): 'archc' names them {op}_{n} from 1; 'keras' as Keras does (the layer class's "
        "snake-case name, numbered per class after the first: conv2d, conv2d_1, ...; across "
        "the whole model in creation order), so a model written to match a Keras one needs "
        "no counters",
    )
    params: dict[str, ParamDecl] = {}
    variants: dict[str, Variant] = {}
    inputs: Annotated[list[InputDecl], Field(min_length=1)]
    defaults: dict[str, dict[str, Any]] = {}
    blocks: dict[str, BlockDef] = {}
    layers: Annotated[list[Item], Field(min_length=1)]
    outputs: RefList | None = None
    expect: Expect | None = None


@functools.cache
def spec_model(ops: frozenset[str]) -> type[Spec]:
    """The Spec model whose items may name the ops in `ops` (any other op is unknown, E013).

    One pydantic model per op is costly to build (and most specs use a few of the registry's
    ops), so a spec is validated by the model of the ops it names (`ops_named`), built once
    per set; `spec_model(frozenset(item_ops()))` is the whole format (the JSON Schema)."""
    repeat = create_model(
        "Repeat",
        __base__=Repeat,
        __doc__=Repeat.__doc__,
        __module__=__name__,
        body=(list["Item"], ...),  # bound below
    )
    item = item_union(ops, repeat)
    items = Annotated[list[item], Field(min_length=1)]  # type: ignore[valid-type]
    block_def = create_model(
        "BlockDef",
        __base__=BlockDef,
        __module__=__name__,
        body=(items, ...),
    )
    spec = create_model(
        "Spec",
        __base__=Spec,
        __doc__=Spec.__doc__,
        __module__=__name__,
        blocks=(dict[str, block_def], {}),  # type: ignore[valid-type]
        layers=(items, ...),
    )
    repeat.model_rebuild(_types_namespace={"Item": item})
    return spec


# --- The JSON Schema (`archc schema`) and the op reference (`archc ops`) ---------------------
#
# The pydantic models above check a spec's structure; op attribute values are checked only
# after expansion (they may be computed). The JSON Schema says up front what the compiler
# accepts: each attribute typed as its op's attribute dataclass validates it, with a
# `${...}` expression allowed wherever the compiler renders one (compiler/template.py: the
# value itself, and each element of a list, at any depth).

EXPR_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": EXPR_PATTERN,
    "description": "a ${...} expression",
}


def _pads_form() -> tuple[Any, dict[str, Any], str]:
    from .ops.pool import pads_value

    one = {"type": "integer", "minimum": 0}
    return (
        pads_value,
        one,
        "a non-negative integer (every side), [height, width] (each on both sides), or "
        "[[top, bottom], [left, right]]",
    )


def _input_forms() -> list[tuple[Any, dict[str, Any], str]]:
    """Validators that accept more forms than the type they produce (pydantic's JSON Schema
    describes only the produced type): (validator function, the extra form, the words for
    all forms)."""
    return [_pads_form()]


def _extra_form(hint: Any) -> tuple[dict[str, Any], str] | None:
    if typing.get_origin(hint) is not Annotated:
        return None
    for meta in typing.get_args(hint)[1:]:
        for func, form, words in _input_forms():
            if getattr(meta, "func", None) is func:
                return form, words
    return None


def _any_of(members: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """anyOf the members, with a member that is itself a bare anyOf flattened into it."""
    flat: list[dict[str, Any]] = []
    for m in members:
        if set(m) <= {"anyOf", "description", "title"} and "anyOf" in m:
            flat += m["anyOf"]
            extra.setdefault("description", m.get("description"))
        else:
            flat.append(m)
    return {**{k: v for k, v in extra.items() if v is not None}, "anyOf": flat}


def computed(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, or an expression; inside lists each element may be an expression too."""
    return _any_of([_elements(schema), EXPR_SCHEMA])


def _elements(schema: dict[str, Any]) -> dict[str, Any]:
    out = dict(schema)
    if isinstance(out.get("items"), dict):
        out["items"] = computed(out["items"])
    if "prefixItems" in out:
        out["prefixItems"] = [computed(s) for s in out["prefixItems"]]
    for key in ("anyOf", "oneOf"):
        if key in out:
            out[key] = [_elements(s) for s in out[key]]
    if out.get("type") == "array":  # pydantic's min_length on a tuple: items, not characters
        for chars, items in (("minLength", "minItems"), ("maxLength", "maxItems")):
            if chars in out:
                out[items] = out.pop(chars)
    return out


_BOUNDS = (
    ("exclusiveMinimum", "> {}"),
    ("minimum", ">= {}"),
    ("exclusiveMaximum", "< {}"),
    ("maximum", "<= {}"),
)


def _bounds(schema: dict[str, Any]) -> str:
    return ", ".join(t.format(_number(schema[k])) for k, t in _BOUNDS if k in schema)


_TYPE_WORDS = {
    "integer": "integers",
    "number": "numbers",
    "boolean": "booleans",
    "string": "strings",
}


def _list_words(schema: dict[str, Any]) -> str:
    items = schema.get("items")
    kind = _TYPE_WORDS.get(items.get("type", ""), "") if isinstance(items, dict) else ""
    what = f"a list of {kind}" if kind else "a list"
    least = schema.get("minItems", schema.get("minLength"))
    return f"{what} (at least {least})" if least else what


def _number(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def yaml_value(value: Any) -> str:
    """A Python value as it is written in a spec (tuples as lists, None as null)."""
    import json

    return json.dumps(_plain(value))


@dataclasses.dataclass(frozen=True)
class AttributeInfo:
    """One attribute of an op, for the schema and `archc ops`."""

    name: str
    what: str  # its type in words, with bounds ("a number (> 0)")
    required: bool
    default: Any  # the default value as a spec writes it (JSON), when not required
    doc: str  # what it means, where the op gives it (dataclass field metadata "doc")
    schema: dict[str, Any]  # its JSON Schema, expressions not included

    @property
    def default_text(self) -> str:
        return "required" if self.required else f"default {yaml_value(self.default)}"

    @property
    def meaning(self) -> str:
        return f"{self.doc}: {self.what}" if self.doc else self.what

    @property
    def description(self) -> str:
        given = "required" if self.required else f"default: {yaml_value(self.default)}"
        return f"{self.meaning}; {given}"


@dataclasses.dataclass(frozen=True)
class OpInfo:
    """One op of the registry, in a user's words."""

    name: str
    title: str  # its layer type (the summary's "Layer (type)" column)
    doc: str
    min_inputs: int
    max_inputs: int | None
    attributes: tuple[AttributeInfo, ...]

    @property
    def inputs(self) -> str:
        lo, hi = self.min_inputs, self.max_inputs
        if hi is None:
            return f"{lo} or more"
        return str(lo) if lo == hi else f"{lo} to {hi}"

    @property
    def description(self) -> str:
        doc = f"{self.doc} " if self.doc else ""
        return f"{doc}(layer type {self.title}; inputs: {self.inputs})"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "layer_type": self.title,
            "doc": self.doc,
            "inputs": {"min": self.min_inputs, "max": self.max_inputs},
            "attributes": [
                {
                    "name": a.name,
                    "type": a.what,
                    "required": a.required,
                    **({} if a.required else {"default": a.default}),
                    "doc": a.doc,
                    "schema": a.schema,
                }
                for a in self.attributes
            ],
        }


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    return [_plain(x) for x in value] if isinstance(value, tuple | list) else value


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A type's JSON Schema with its own `$defs` (an enum, a nested model) put in place: the
    references would dangle once it is embedded in the spec's schema."""
    defs = schema.pop("$defs", {})

    def put(node: Any) -> Any:
        if isinstance(node, list):
            return [put(x) for x in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**put(defs[ref.removeprefix("#/$defs/")]), **rest}
        return {k: put(v) for k, v in node.items()}

    return dict(put(schema))


def _attribute(field: dataclasses.Field[Any], hint: Any) -> AttributeInfo:
    from pydantic import TypeAdapter

    from .ops import describe

    typed = _inline(TypeAdapter(hint).json_schema())
    extra = _extra_form(hint)
    if extra is not None:
        form, what = extra
        typed = _any_of([form, typed])
    else:
        what = describe(hint)
        if what == "a list":  # a tuple without words of its own: say what it holds
            what = _list_words(typed)
        bounds = _bounds(typed)
        if bounds and not any(w in what for w in ("positive", "negative")):
            what = f"{what} ({bounds})"
    factory = field.default_factory
    required = field.default is dataclasses.MISSING and factory is dataclasses.MISSING
    given = factory() if factory is not dataclasses.MISSING else field.default
    default = None if required else _plain(given)
    doc = str(field.metadata.get("doc", "")) if field.metadata else ""
    return AttributeInfo(field.name, what, required, default, doc, typed)


def op_reference() -> list[OpInfo]:
    """Every op a spec can use (sorted by name), with its attributes in a user's words."""
    out = []
    for name, op in sorted(load_all().items()):
        if name == "input":  # graph inputs are declared under `inputs:`
            continue
        hints = typing.get_type_hints(op.attrs, include_extras=True)
        attrs = tuple(_attribute(f, hints[f.name]) for f in op.user_fields)
        out.append(OpInfo(name, op.title, op.doc, op.min_inputs, op.max_inputs, attrs))
    return out


# Descriptions of the spec format's own keys (the op attributes describe themselves).
ITEM_KEYS = {
    "op": "the op (`archc ops` lists them)",
    "name": "layer name, a template (e.g. conv${stage}a); default <op>_<n> (inside blocks "
    "and repeats, generated code needs a name)",
    "inputs": "references by name: prev (the previous item), input (the block's input), a "
    "local id or an earlier layer name; or a ${...} expression that picks names; default prev",
    "when": "a condition: the item exists only when it is true",
    "id": "a local alias for the item's output, for references in inputs",
    "trainable": "false freezes the layer's weights",
}
STRUCTURE_KEYS: dict[str, dict[str, str]] = {
    "Spec": {
        "archc": "spec format version",
        "doc": "what the model is",
        "params": "typed parameters, overridable with --set, the generated build_model's arguments",
        "variants": "named parameter sets (scale variants), chosen with --variant",
        "inputs": "the graph's inputs",
        "defaults": "per-op attribute defaults, overridden by any item's own value",
        "blocks": "reusable, parametric groups of layers, called with {block: NAME, args: {...}}",
        "layers": "the network: op items, block calls and repeats, in order",
        "outputs": "the model's outputs by name; default the last layer",
        "expect": "parameter counts the compiled model must have (checked when no parameter "
        "is overridden)",
    },
    "ParamDecl": {
        "type": "the value's type",
        "default": "its value unless overridden (a ${...} expression may use parameters "
        "declared before it); null: it must be given",
        "doc": "what it means",
        "min": "smallest allowed value (numbers; each element of a list)",
        "max": "largest allowed value (numbers; each element of a list)",
        "choices": "the allowed values (single values only)",
    },
    "Expect": {
        "total": "all parameters",
        "trainable": "trainable parameters",
        "non_trainable": "non-trainable parameters (e.g. BatchNorm's moving statistics)",
    },
    "Variant": {
        "params": "parameter values of this variant",
        "expect": "parameter counts of this variant",
        "doc": "what the variant is",
    },
    "InputDecl": {
        "name": "the input's name (its Keras layer name)",
        "shape": "channels-last, batch excluded, e.g. [224, 224, 3]; null for a height or "
        "width known only when the model runs, e.g. [null, null, 3]",
        "dtype": "float, or int for integer token ids (read by an embedding layer)",
    },
    "BlockDef": {
        "args": "typed arguments, bound in the body's expressions",
        "body": "the block's items; its input is the call's input",
        "inputs": "names of the block's inputs (a call passes as many: inputs: [x, memory]), "
        "references in its body; the first is also `input`; default one input",
        "doc": "what the block is",
    },
    "BlockCall": {
        **{k: v for k, v in ITEM_KEYS.items() if k not in ("op", "trainable")},
        "block": "the block to call (a name under blocks:)",
        "args": "the block's arguments (values or ${...} expressions)",
        "id": "a local alias for the block's output",
        "name": "a label for readers (the compiler does not use it)",
    },
    "Apply": {
        **{k: v for k, v in ITEM_KEYS.items() if k not in ("op", "trainable", "name")},
        "apply": "the layer to call again (an earlier layer's name or id in the same block or "
        "level): its weights are shared, counted once",
        "reverse": "an embedding only: multiply by its matrix transposed (x @ embeddings^T), "
        "a language model's head tied to its token embedding",
        "name": "the name of this call's output (default <layer>.<n>, the n-th call again)",
    },
    "Repeat": {
        **{k: v for k, v in ITEM_KEYS.items() if k not in ("op", "trainable", "name")},
        "repeat": "how many times the body runs",
        "var": "the loop variable, bound in the body's expressions",
        "start": "the loop variable's first value",
        "name": "a label for the loop, in error paths",
        "body": "the items run on each iteration (the first reads the previous iteration's output)",
        "id": "a local alias for the last iteration's output",
    },
}

_PARAM_TYPES: dict[str, dict[str, Any]] = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "str": {"type": "string"},
}


def _param_rules() -> list[dict[str, Any]]:
    """ParamDecl's checks that depend on its `type`: the default's type, min/max only on
    numbers, choices only on single values and of the declared type."""
    rules = []
    for name in typing.get_args(ParamDecl.model_fields["type"].annotation):
        inner = name.removeprefix("list[").removesuffix("]")
        one = _PARAM_TYPES[inner]
        value = {"type": "array", "items": one} if name != inner else one
        default = {"anyOf": [computed(value), {"type": "null"}]}
        if name == "str":  # any text: a template renders to text
            default = {"anyOf": [one, {"type": "null"}]}
        then: dict[str, Any] = {"default": default}
        if inner not in ("int", "float"):
            then["min"] = then["max"] = {"type": "null"}
        if name != inner:
            then["choices"] = {"type": "null"}
        else:
            then["choices"] = {"anyOf": [{"type": "array", "items": one}, {"type": "null"}]}
        rules.append(
            {"if": {"properties": {"type": {"const": name}}}, "then": {"properties": then}}
        )
    return rules


def _attribute_schema(a: AttributeInfo) -> dict[str, Any]:
    default = {} if a.required else {"default": a.default}
    return {**computed(a.schema), "title": a.name, "description": a.description, **default}


def layer_name_schema() -> dict[str, Any]:
    """A literal layer name: an ASCII identifier, not a Python keyword, not a reference word,
    not starting with '__' (compiler/names.py's check_name)."""
    import keyword

    return {
        "type": "string",
        "pattern": r"^(?!__)[A-Za-z_][A-Za-z0-9_]*$",
        "not": {"enum": sorted([*keyword.kwlist, *RESERVED_REFS])},
        "description": "an ASCII identifier (letters, digits, underscores; not a Python "
        "keyword, prev or input)",
    }


def _describe_keys(model: dict[str, Any], words: dict[str, str]) -> None:
    for key, prop in model["properties"].items():
        if key in words:
            prop["description"] = words[key]


def json_schema() -> dict[str, Any]:
    """JSON Schema of the spec format: every key and op attribute typed and described, with
    `${...}` expressions wherever the compiler evaluates them."""
    schema = spec_model(frozenset(item_ops())).model_json_schema()
    defs = schema["$defs"]
    ops = op_reference()
    for op in ops:
        model = defs[_item_model_name(load_all()[op.name])]
        model["description"] = op.description
        _describe_keys(model, ITEM_KEYS)
        model["properties"]["name"] = {
            **_any_of([layer_name_schema(), EXPR_SCHEMA]),
            "description": ITEM_KEYS["name"],
        }
        for a in op.attributes:
            model["properties"][a.name] = _attribute_schema(a)
        # required on the item here (JSON Schema cannot see `defaults:`), though a spec may
        # give them in defaults: instead, which the compiler accepts
        model["required"] = ["op", *[a.name for a in op.attributes if a.required]]
    for name, words in STRUCTURE_KEYS.items():
        _describe_keys(schema if name == "Spec" else defs[name], words)
    defs["ParamDecl"]["allOf"] = _param_rules()
    defs["InputDecl"]["properties"]["name"].update(
        layer_name_schema(), description=(STRUCTURE_KEYS["InputDecl"]["name"])
    )
    schema["properties"]["defaults"] = {
        "description": STRUCTURE_KEYS["Spec"]["defaults"],
        "type": "object",
        "additionalProperties": False,
        "properties": {
            op.name: {
                "description": f"defaults for every {op.name} item",
                "type": "object",
                "additionalProperties": False,
                "properties": {a.name: _attribute_schema(a) for a in op.attributes},
            }
            for op in ops
        },
    }
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "archc spec"
    return schema
