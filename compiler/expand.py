"""Expansion: Spec + parameter values -> Graph (IR), every node with its origin.

Resolves blocks, repeats, conditions, name templates, per-op defaults and references by name.
Errors are collected; an item that fails is marked broken and anything fed by it is skipped
quietly, so each independent mistake is reported once and nothing cascades.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from .attributes import given_attributes, validate_attributes
from .diagnostics import (
    Collector,
    Diagnostic,
    Location,
    SpecError,
    did_you_mean,
    short_repr,
)
from .expr import SHAPE_FUNCTION, ExprError
from .infer import infer_node, unknown_axes
from .ir import Expansion, Graph, Node, Origin, Shape
from .load import LoadedSpec
from .names import CONSTANT_HINT, SHAPE_NAMES, check_name, constant_name, keras_name
from .ops import load_all
from .ops.core import InputAttrs
from .params import ParamTypeError, coerce
from .references import References, Scope
from .schema import Apply, BlockCall, Repeat
from .template import is_template, render
from .yaml_loader import PathKey

MAX_NODES = 100_000
MAX_ITEMS = 200_000  # items visited, skipped ones included: bounds nested repeats
MAX_REPEAT = 10_000
MAX_BLOCK_DEPTH = 32


class _Abort(Exception):
    """Stop expanding (a limit was hit); the collected diagnostics say why."""


class _FollowsError(ExprError):
    """An expression reads a layer that has errors, reported where they are: this one
    follows from them and is not reported (the report names the root, not its echoes)."""


class _Expander(References):
    def __init__(
        self, loaded: LoadedSpec, params: dict[str, Any], fill: tuple[int, int] | None = None
    ):
        self.spec = loaded.spec
        self.doc = loaded.doc
        self.params = params
        self.fill = fill  # (height, width) given to inputs whose sizes are unknown (null)
        self.ops = load_all()
        self.nodes: list[Node] = []
        self.defined: dict[str, Location] = {}
        self.broken: set[str] = set()
        self.counters: dict[str, int] = {}
        self.shapes: dict[str, Shape | None] = {}
        self.by_name: dict[str, Node] = {}
        self.visited = 0
        self.trace: list[Expansion] = []  # the children of the item being expanded
        self.errors = Collector()
        self._broken_seq = 0

    # -- helpers --------------------------------------------------------------------------
    def error(
        self,
        code: str,
        message: str,
        where: PathKey | Location | None,
        scope: Scope | None,
        hint: str = "",
        key: bool = False,
        related: tuple[tuple[str, Location], ...] = (),
    ) -> None:
        loc = (
            where if isinstance(where, Location) or where is None else self.doc.loc(where, key=key)
        )
        path = " > ".join(scope.path) if scope and scope.path else ""
        self.errors.add(Diagnostic(code, message, loc, path, hint, related))

    def render(
        self, value: Any, env: dict[str, Any], where: PathKey, scope: Scope, what: str
    ) -> tuple[bool, Any]:
        try:
            return True, render(value, env)
        except _FollowsError:
            return False, None
        except ExprError as exc:
            unknown = [n for n in SHAPE_NAMES if n in env and env[n] is None]
            reads = _reads_unknown_size(value, env)
            if reads is not None:
                message = f"{what} needs known sizes: {exc.message}; {reads} until the model runs"
                self.error("E075", message, where, scope, UNKNOWN_SIZE_HINT)
            elif not any(re.search(rf"\b{n}\b", str(value)) for n in unknown):
                self.error("E030", f"{what}: {exc.message}", where, scope, exc.hint)
            # else: the shape is unknown because of an error already reported upstream
            return False, None

    @contextlib.contextmanager
    def traced(
        self, kind: str, where: PathKey, label: str, values: tuple[tuple[str, Any], ...] = ()
    ) -> Iterator[None]:
        """Record what expanding one block call, repeat or iteration produced."""
        outer, self.trace = self.trace, []
        try:
            yield
        finally:
            children, self.trace = tuple(self.trace), outer
            self.trace.append(Expansion(kind, tuple(where), label, values, True, children))

    def mark_broken(self, scope: Scope, name: str | None, item: Any = None) -> None:
        """An item that failed (reported): its name, or a placeholder, becomes `prev` and,
        where the item has one, what its id names, so that later references to it are quiet
        (the layers they feed are broken too, without another error)."""
        if name is None:
            name = self.placeholder()
        self.broken.add(name)
        scope.prev = name
        if getattr(item, "id", None) is not None:
            scope.ids[item.id] = name

    def placeholder(self) -> str:
        """A broken name that no layer can have: what a failed item without a name gives."""
        self._broken_seq += 1
        name = f"<broken {self._broken_seq}>"
        self.broken.add(name)
        return name

    # -- graph ----------------------------------------------------------------------------
    def run(self) -> Graph:
        scope = Scope(env=dict(self.params), input=None, prev=None, path=())
        inputs = [self.input(i, decl, scope) for i, decl in enumerate(self.spec.inputs)]
        scope.input = inputs[0] if inputs else None
        scope.prev = inputs[-1] if inputs else None
        with contextlib.suppress(_Abort):
            self.items(self.spec.layers, ("layers",), scope)
        outputs: list[str] = []
        if self.spec.outputs is None:
            if scope.prev is not None and scope.prev not in self.broken:
                outputs = [scope.prev]
        else:
            for i, ref in enumerate(self.spec.outputs):
                target = self.ref(ref, ("outputs", i), scope)
                if target is not None and target not in self.broken:
                    outputs.append(target)
        self.errors.raise_if_any()
        nodes, trace = tuple(self.nodes), tuple(self.trace)
        return Graph(self.spec.name, nodes, tuple(inputs), tuple(outputs), trace)

    def input(self, i: int, decl: Any, scope: Scope) -> str:
        """Add a graph input; on failure its name is marked broken (nothing cascades)."""
        where = ("inputs", i)
        ok, shape = self.render(decl.shape, scope.env, (*where, "shape"), scope, "input shape")
        if not ok:
            self.broken.add(decl.name)
            return decl.name
        if (
            not isinstance(shape, list)
            or not shape
            or not all(
                d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0)
                for d in shape
            )
        ):
            self.error(
                "E040",
                f"input shape must be a list of positive integers, got {short_repr(shape)}",
                (*where, "shape"),
                scope,
                hint="for example shape: [32, 32, 3] (height, width, channels; batch excluded); "
                "null for a height or width known only when the model runs",
            )
            self.broken.add(decl.name)
            return decl.name
        unknown = [k for k, d in enumerate(shape) if d is None]
        if unknown and (len(shape) != 3 or 2 in unknown):
            given = "[" + ", ".join("null" if d is None else repr(d) for d in shape) + "]"
            self.error(
                "E040",
                f"input shape {given}: only an image's height and width may be unknown (null)",
                (*where, "shape"),
                scope,
                hint="write [height, width, channels] with known channels, e.g. [null, null, 3]",
            )
            self.broken.add(decl.name)
            return decl.name
        if unknown and self.fill is not None:  # compiled at a size (verify, compile's check)
            shape = [self.fill[k] if d is None else d for k, d in enumerate(shape)]
        attrs = InputAttrs(tuple(shape), decl.dtype)
        added = self.add_node(decl.name, where, "input", attrs, (), True, scope)
        if added is None:
            self.broken.add(decl.name)
        return decl.name

    def add_node(
        self,
        name: Any,
        where: PathKey,
        op: str,
        attrs: Any,
        inputs: tuple[str, ...],
        trainable: bool,
        scope: Scope,
        shares: str | None = None,
    ) -> str | None:
        if self.name_problem(name, where, scope):
            return None
        loc = self.doc.loc(where)
        if len(self.nodes) >= MAX_NODES:
            self.error(
                "E043",
                f"the network has more than {MAX_NODES:,} layers",
                where,
                scope,
                hint="check repeat counts and block recursion",
            )
            raise _Abort
        self.defined[name] = loc
        origin = Origin(loc, (*scope.path, name), tuple(where))
        node = self.inferred(Node(name, op, attrs, inputs, origin, trainable, shares=shares))
        self.nodes.append(node)
        self.by_name[name] = node
        self.shapes[name] = node.shape
        self.trace.append(Expansion("op", tuple(where), name, node=name))
        return name

    def name_problem(self, name: Any, where: PathKey, scope: Scope) -> bool:
        """Report an unusable or duplicate layer name; True when there was one."""
        why = check_name(name)
        if why:
            self.error(
                "E041", f"invalid layer name {short_repr(name)}: {why}", (*where, "name"), scope
            )
            return True
        if name in self.defined or name in self.broken:
            first = self.defined.get(name)
            self.error(
                "E042",
                f"duplicate layer name '{name}'",
                (*where, "name"),
                scope,
                hint="layer names must be unique; use a name template such as 'conv${stage}a'",
                related=(("first defined at", first),) if first else (),
            )
            return True
        return False

    def inferred(self, node: Node) -> Node:
        """The node with its shape, weights and FLOPs (inferred here, once, so that
        expressions can read `in_shape` and `prev_shape`). A shape error is reported here and
        the node marked broken, so that nothing downstream trips over the unknown shape."""
        ins = [s for i in node.inputs if (s := self.shapes.get(i)) is not None]
        if len(ins) != len(node.inputs):
            return node
        try:
            return infer_node(node, ins, self.by_name)
        except SpecError as exc:
            for diag in exc.diagnostics:
                self.errors.add(diag)
            self.broken.add(node.name)
            return node

    def shape_value(self, name: str | None) -> list[int] | None:
        shape = self.shapes.get(name) if name is not None else None
        return list(shape) if shape is not None else None

    def layer_shape(self, scope: Scope, name: Any) -> list[int | None]:
        """`shape('name')` in an item's values: the output shape (batch excluded) of what the
        reference `name` names there ('prev', 'input', an id, an earlier layer)."""
        if not isinstance(name, str):
            raise ExprError(f"shape() takes a layer name, got {short_repr(name)}")
        node = {"prev": scope.prev, "input": scope.input}.get(name) or scope.ids.get(name)
        if node is None and (name in self.defined or name in self.broken):
            node = name
        if node is None:
            known = [*scope.ids, *self.defined, "prev", "input"]
            raise ExprError(
                f"shape('{name}'): no layer '{name}' before this item",
                hint=did_you_mean(name, known) or "name a layer, an id, 'prev' or 'input'",
            )
        shape = self.shapes.get(node)
        if shape is None or node in self.broken:
            raise _FollowsError(f"shape('{name}'): the layer '{node}' has errors (above)")
        return list(shape)

    def auto_name(self, op: str, layer_class: str) -> str:
        """The name of a layer the spec leaves unnamed. `auto_names: keras`: the name Keras
        gives it (the class's snake-case name, numbered per class after the first: conv2d,
        conv2d_1, ...; across the whole model, in creation order); else `{op}_{n}` from 1,
        skipping names the spec uses."""
        if self.spec.auto_names == "keras":
            base = keras_name(layer_class)
            n = self.counters.get(base, 0)
            self.counters[base] = n + 1
            return base if n == 0 else f"{base}_{n}"
        while True:
            n = self.counters.get(op, 0) + 1
            self.counters[op] = n
            name = f"{op}_{n}"
            if name not in self.defined:
                return name

    # -- items ----------------------------------------------------------------------------
    def items(self, items: list[Any], where: PathKey, scope: Scope) -> None:
        for i, item in enumerate(items):
            self.item(item, (*where, i), scope)

    def item(self, item: Any, where: PathKey, scope: Scope) -> None:
        self.visited += 1
        if self.visited > MAX_ITEMS:
            self.error(
                "E044",
                f"expanding the spec visits more than {MAX_ITEMS:,} items",
                where,
                scope,
                hint="check nested repeat counts",
            )
            raise _Abort
        scope.env["prev_shape"] = self.shape_value(scope.prev)
        scope.env["in_shape"] = self.shape_value(scope.input)
        scope.env[SHAPE_FUNCTION] = functools.partial(self.layer_shape, scope)
        if item.when is not None:
            ok, cond = self.render(item.when, scope.env, (*where, "when"), scope, "when")
            if not ok:
                return self.mark_broken(scope, None, item)
            if not isinstance(cond, bool):
                self.error(
                    "E031",
                    f"'when' must be true or false, got {short_repr(cond)}",
                    (*where, "when"),
                    scope,
                    hint="write a comparison, e.g. ${stage > 1}",
                )
                return self.mark_broken(scope, None, item)
            if not cond:
                kind = "block" if isinstance(item, BlockCall) else "repeat"
                kind = kind if isinstance(item, BlockCall | Repeat) else "op"
                self.trace.append(Expansion(kind, tuple(where), _label(item), taken=False))
                return None
        if isinstance(item, BlockCall):
            return self.call(item, where, scope)
        if isinstance(item, Repeat):
            return self.repeat(item, where, scope)
        if isinstance(item, Apply):
            return self.apply(item, where, scope)
        return self.op(item, where, scope)

    def op(self, item: Any, where: PathKey, scope: Scope) -> None:
        """Every part of an op item is checked, even when one part fails, so independent
        mistakes are all reported; a failed item is marked broken (no cascades)."""
        opdef = self.ops[item.op]
        name, ok = None, True
        if item.name is not None:
            ok, name = self.render(item.name, scope.env, (*where, "name"), scope, "name")
            if ok and name is None and self.spec.auto_names == "archc":
                self.error(
                    "E041",
                    "the name template gave None (no name)",
                    (*where, "name"),
                    scope,
                    hint="a name that may be left out takes Keras' automatic names: "
                    "auto_names: keras at the top of the spec",
                )
                ok = False
        inputs = self.refs(item, where, scope)
        if inputs is not None and not any(i in self.broken for i in inputs):
            ok = self.check_arity(opdef, item, inputs, where, scope) and ok
        elif inputs is None:
            ok = False
        attrs = self.attrs(item, opdef, where, scope)
        good, trainable = self.render(
            item.trainable, scope.env, (*where, "trainable"), scope, "trainable"
        )
        if good and not isinstance(trainable, bool):
            self.error(
                "E033",
                f"'trainable' must be true or false, got {short_repr(trainable)}",
                (*where, "trainable"),
                scope,
            )
            good = False
        if not ok or not good or attrs is None or any(i in self.broken for i in inputs or ()):
            if name is not None and self.name_problem(name, where, scope):
                name = None
            return self.mark_broken(scope, name, item)
        if name is None:
            name = self.auto_name(opdef.name, opdef.layer_type(attrs))
        added = self.add_node(name, where, opdef.name, attrs, inputs or (), trainable, scope)
        if added is None:
            return self.mark_broken(scope, None, item)
        scope.prev = added
        if item.id is not None:
            scope.ids[item.id] = added
        return None

    def apply(self, item: Apply, where: PathKey, scope: Scope) -> None:
        """An earlier layer called again (`apply:`): a node of the layer's op and attributes
        on the new inputs, sharing its weights (`Node.shares`: counted on the layer's node
        only). Its weights must be the layer's: an input of another size is E054."""
        if is_template(item.apply):  # generated code calls one variable: a name written out
            self.error(
                "E054",
                f"apply names a layer by an expression ({item.apply!r})",
                (*where, "apply"),
                scope,
                hint="give the layer an id (id: fc) and apply that: apply: fc",
            )
            return self.mark_broken(scope, None, item)
        owner_name = self.resolve(item.apply, (*where, "apply"), scope)
        inputs = self.refs(item, where, scope)
        name, ok = None, True
        if item.name is not None:
            ok, name = self.render(item.name, scope.env, (*where, "name"), scope, "name")
        if owner_name is None or inputs is None or not ok:
            return self.mark_broken(scope, name, item)
        if owner_name in self.broken or any(i in self.broken for i in inputs):
            return self.mark_broken(scope, name, item)
        owner = self.by_name[owner_name]
        owner = self.by_name[owner.shares] if owner.shares else owner
        opdef = self.ops[owner.op]
        problem = ""
        if owner.op == "input":
            problem = f"'{item.apply}' is a graph input, not a layer"
        elif item.reverse and owner.op != "embedding":
            problem = f"reverse: true calls an embedding in reverse; '{owner.name}' is a {owner.op}"
        if problem:
            self.error(
                "E054",
                f"cannot apply '{item.apply}' again: {problem}",
                (*where, "apply"),
                scope,
                hint="apply names an earlier layer (its name or id) whose weights the call "
                "shares; reverse: true only with an embedding (a tied output head)",
            )
            return self.mark_broken(scope, name, item)
        if not self.check_arity(opdef, item, inputs, where, scope):
            return self.mark_broken(scope, name, item)
        attrs = owner.attrs
        if item.reverse:
            attrs = dataclasses.replace(attrs, reverse=True, reversible=True)
            if not owner.attrs.reversible:  # Keras' ReversibleEmbedding takes the call
                tied = dataclasses.replace(owner.attrs, reversible=True)
                self.replace_node(dataclasses.replace(owner, attrs=tied))
        if name is None:
            k = 1 + sum(1 for n in self.nodes if n.shares == owner.name)
            name = f"{owner.name}_call{k}"
        added = self.add_node(
            name, where, owner.op, attrs, inputs, owner.trainable, scope, shares=owner.name
        )
        if added is None:
            return self.mark_broken(scope, None, item)
        node = self.by_name[added]
        if node.shape is not None and not item.reverse and node.weights != owner.weights:
            theirs = ", ".join(f"{w.name} {w.shape}" for w in owner.weights)
            ours = ", ".join(f"{w.name} {w.shape}" for w in node.weights)
            self.error(
                "E054",
                f"'{owner.name}' applied to {node.inputs[0]!r} would need weights {ours}, "
                f"but its weights are {theirs}",
                (*where, "inputs") if item.inputs is not None else where,
                scope,
                hint="a shared layer's weights fit one input size: apply it to inputs of the "
                "size it was first called on",
                related=(("the layer is defined at", owner.origin.location),)
                if owner.origin.location is not None
                else (),
            )
            self.broken.add(added)
        self.replace_node(dataclasses.replace(node, weights=()))
        scope.prev = added
        if item.id is not None:
            scope.ids[item.id] = added
        return None

    def replace_node(self, node: Node) -> None:
        """Put a changed node where the node of its name is (a layer called again in reverse
        becomes reversible; a call's weights are the layer's)."""
        i = next(k for k, n in enumerate(self.nodes) if n.name == node.name)
        self.nodes[i] = node
        self.by_name[node.name] = node

    def check_arity(
        self, opdef: Any, item: Any, inputs: tuple[str, ...], where: PathKey, scope: Scope
    ) -> bool:
        n = len(inputs)
        if n >= opdef.min_inputs and (opdef.max_inputs is None or n <= opdef.max_inputs):
            return True
        want = (
            f"{opdef.min_inputs}"
            if opdef.max_inputs == opdef.min_inputs
            else f"at least {opdef.min_inputs}"
        )
        self.error(
            "E052",
            f"'{opdef.name}' takes {want} input(s), got {n}",
            (*where, "inputs") if item.inputs is not None else where,
            scope,
            hint="list them by name: inputs: [prev, shortcut]",
        )
        return False

    def one_input(self, inputs: tuple[str, ...], what: str, where: PathKey, scope: Scope) -> bool:
        """A block call or a repeat starts from one input: more (or none) is E052 at its
        `inputs`, never an input dropped."""
        if len(inputs) == 1:
            return True
        kind = "a repeat" if what == "a repeat" else "a block"
        self.error(
            "E052",
            f"{what} takes 1 input, got {len(inputs)}",
            (*where, "inputs"),
            scope,
            hint=f"{kind} starts from one input; merge them first (an add or concat item), "
            "or pass one",
        )
        return False

    def attrs(self, item: BaseModel, opdef: Any, where: PathKey, scope: Scope) -> Any:
        """The op's attributes: per-op defaults, then the item's own values, rendered in the
        item's scope and validated; None (reported) if any is wrong."""
        given = given_attributes(item, opdef, self.spec.defaults, where)
        resolved: dict[str, Any] = {}
        ok = True
        for key, (value, source) in given.items():
            good, resolved[key] = self.render(
                value, scope.env, source, scope, f"{opdef.name}.{key}"
            )
            ok = ok and good
        if not ok:
            return None
        attrs, problems = validate_attributes(opdef, resolved)
        for key, message, hint in problems:
            source = given[key][1] if key in given else where
            reads = _reads_unknown_size(given[key][0], scope.env) if key in given else None
            if reads is not None and _has_none(resolved[key]):  # `pool: ${prev_shape[0]}`
                message = f"{opdef.name}.{key} needs known sizes but is "
                message += f"{short_repr(resolved[key])}; {reads} until the model runs"
                self.error("E075", message, source, scope, UNKNOWN_SIZE_HINT)
                continue
            self.error("E032", message, source, scope, hint)
        return attrs

    def call(self, item: BlockCall, where: PathKey, scope: Scope) -> None:
        blocks = self.spec.blocks
        if item.block not in blocks:
            self.error(
                "E060",
                f"unknown block '{item.block}'",
                (*where, "block"),
                scope,
                hint=did_you_mean(item.block, blocks)
                or "blocks: " + (", ".join(blocks) or "none declared"),
            )
            return self.mark_broken(scope, None, item)
        if item.block in scope.blocks or len(scope.blocks) >= MAX_BLOCK_DEPTH:
            cycle = " -> ".join((*scope.blocks, item.block))
            self.error(
                "E061",
                f"block recursion: {cycle}",
                (*where, "block"),
                scope,
                hint="a block may not call itself, directly or through other blocks",
            )
            return self.mark_broken(scope, None, item)
        block = blocks[item.block]
        env = dict(self.params)
        ok = True
        for key in item.args:
            if key not in block.args:
                ok = False
                self.error(
                    "E062",
                    f"block '{item.block}' has no argument '{key}'",
                    (*where, "args", key),
                    scope,
                    key=True,
                    hint=did_you_mean(key, block.args)
                    or "arguments: " + (", ".join(block.args) or "none"),
                )
        for key, decl in block.args.items():
            if key in item.args:
                good, value = self.render(
                    item.args[key], scope.env, (*where, "args", key), scope, f"argument '{key}'"
                )
                src: PathKey = (*where, "args", key)
            elif decl.default is not None:
                good, value = self.render(
                    decl.default,
                    env,
                    ("blocks", item.block, "args", key),
                    scope,
                    f"default of argument '{key}'",
                )
                src = ("blocks", item.block, "args", key)
            else:
                self.error(
                    "E063",
                    f"block '{item.block}' needs argument '{key}'",
                    (*where, "block"),
                    scope,
                    hint=f"add args: {{{key}: ...}}",
                )
                ok = False
                continue
            if not good:
                ok = False
                continue
            try:
                env[key] = coerce(value, decl)
            except ParamTypeError as exc:
                ok = False
                self.error("E064", f"argument '{key}' of block '{item.block}': {exc}", src, scope)
        inputs = (
            self.refs(item, where, scope)
            if item.inputs is not None
            else ((scope.prev,) if scope.prev is not None else None)
        )
        if inputs is not None and block.inputs is not None:
            if len(inputs) != len(block.inputs):
                self.error(
                    "E052",
                    f"block '{item.block}' takes {len(block.inputs)} input(s) "
                    f"({', '.join(block.inputs)}), got {len(inputs)}",
                    (*where, "inputs") if item.inputs is not None else where,
                    scope,
                    hint="pass one reference per input, in the block's order: inputs: ["
                    + ", ".join(block.inputs)
                    + "]",
                )
                inputs = None
        elif inputs is not None and not self.one_input(
            inputs, f"block '{item.block}'", where, scope
        ):
            inputs = None
        if not ok or inputs is None or any(i in self.broken for i in inputs):
            return self.mark_broken(scope, None, item)
        label = f"block {item.block}"
        named = dict(zip(block.inputs or (), inputs, strict=False))  # the inputs' names
        inner = Scope(
            env, inputs[0], inputs[0], (*scope.path, label), named, (*scope.blocks, item.block)
        )
        args = tuple((k, env[k]) for k in block.args)
        with self.traced("block", where, item.block, args):
            self.items(block.body, ("blocks", item.block, "body"), inner)
        scope.prev = inner.prev
        if item.id is not None and inner.prev is not None:
            scope.ids[item.id] = inner.prev
        return None

    def repeat(self, item: Repeat, where: PathKey, scope: Scope) -> None:
        ok, count = self.render(item.repeat, scope.env, (*where, "repeat"), scope, "repeat")
        if not ok:
            return self.mark_broken(scope, None, item)
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_REPEAT:
            self.error(
                "E065",
                f"repeat count must be an integer in [0, {MAX_REPEAT}], got {short_repr(count)}",
                (*where, "repeat"),
                scope,
            )
            return self.mark_broken(scope, None, item)
        if not item.var.isidentifier():
            self.error(
                "E066",
                f"loop variable {short_repr(item.var)} is not a valid name",
                (*where, "var"),
                scope,
            )
            return self.mark_broken(scope, None, item)
        if reason := constant_name(item.var):
            self.error(
                "E066",
                f"loop variable '{item.var}' {reason}",
                (*where, "var"),
                scope,
                CONSTANT_HINT,
            )
            return self.mark_broken(scope, None, item)
        if item.inputs is not None:
            start = self.refs(item, where, scope)
            if start is not None and not self.one_input(start, "a repeat", where, scope):
                start = None
            # a start that failed (reported): the body still runs, from a broken `prev`, so
            # that the layers it names are known (broken) to the references after it
            scope.prev = start[0] if start is not None else self.placeholder()
        label = item.name or item.var
        with self.traced("repeat", where, label):
            self.iterations(item, where, scope, count, label)
        if item.id is not None and scope.prev is not None:
            scope.ids[item.id] = scope.prev
        return None

    def iterations(
        self, item: Repeat, where: PathKey, scope: Scope, count: int, label: str
    ) -> None:
        for i in range(item.start, item.start + count):
            inner = Scope(
                {**scope.env, item.var: i},
                scope.input,
                scope.prev,
                (*scope.path, f"{label} {i}"),
                dict(scope.ids),
                scope.blocks,
            )
            with self.traced("iteration", where, f"{label} {i}", ((item.var, i),)):
                self.items(item.body, (*where, "body"), inner)
            scope.prev = inner.prev


def _label(item: Any) -> str:
    if isinstance(item, BlockCall):
        return item.block
    if isinstance(item, Repeat):
        return item.name or item.var
    return item.name if isinstance(item.name, str) else item.op


UNKNOWN_SIZE_HINT = (
    "give the input a size (inputs: shape: [224, 224, 3]), or compute this from sizes that "
    "are known (the channels: prev_shape[-1])"
)


def _has_none(value: Any) -> bool:
    return value is None or (isinstance(value, list | tuple) and any(map(_has_none, value)))


def _reads_unknown_size(text: Any, env: dict[str, Any]) -> str | None:
    """Where an expression reads in_shape or prev_shape while it holds an unknown size (None):
    what it read ('prev_shape is (None, 32, 64): its height is unknown')."""
    for name in SHAPE_NAMES:
        shape = env.get(name)
        if shape is not None and None in shape and re.search(rf"\b{name}\b", str(text)):
            axes = unknown_axes(tuple(shape))
            verb = "are" if " and " in axes else "is"
            return f"{name} is {tuple(shape)}: its {axes} {verb} unknown"
    return None


def expand(
    loaded: LoadedSpec, params: dict[str, Any], fill: tuple[int, int] | None = None
) -> Graph:
    """Expand a validated spec with resolved parameters into an (un-inferred) Graph; `fill`
    gives inputs of unknown height and width (null) that size instead."""
    expander = _Expander(loaded, params, fill)
    try:
        return expander.run()
    except RecursionError:
        raise SpecError(
            [Diagnostic("E067", "spec nesting too deep to expand", expander.doc.loc(()))]
        ) from None
