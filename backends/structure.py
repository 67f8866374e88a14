"""The spec's structure, ready for code generation: blocks, repeats, conditions, references.

Both backends generate code from this one analysis. It walks the spec's items (not the flat
graph), so a block becomes one function or class, a repeat one loop, a `when` one `if`, and
every expression stays an expression. References by name are resolved to variables here:
`prev` is the running tensor, `input` the block's input, an `id` or a layer name its own
variable, and a reference computed by an expression (`${'shortcut' if s else 'input'}`) a
conditional over those. The compiled graph supplies what only expansion knows: the names of
unnamed layers and the shapes each item saw (`OpStep.nodes`).
"""

from __future__ import annotations

import ast
import builtins
import functools
import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archc.backends.keras.ops import keras_layer
from archc.compiler.api import Compiled
from archc.compiler.diagnostics import Diagnostic, SpecError
from archc.compiler.expr import ExprError, parse
from archc.compiler.ir import Node
from archc.compiler.names import SHAPE_NAMES, keras_name
from archc.compiler.ops import load_all
from archc.compiler.schema import Apply, BlockCall, ParamDecl, Repeat
from archc.compiler.template import is_template, split_template
from archc.compiler.yaml_loader import PathKey

from .helper_library import helper_names
from .pysrc import functions_used, shape_calls, value_names

# Names the generated modules define or use themselves (besides the helpers they may carry);
# spec names that collide get a '_'.
_OWN_NAMES = frozenset(
    {
        "keras",
        "layers",
        "regularizers",
        "math",
        "torch",
        "nn",
        "F",
        "Tensor",
        "x",
        "inputs",
        "shape",
        "in_shape",
        "self",
        "build_model",
        "SPEC",
        "PARAMS",
        "INPUT_SHAPE",
        "OUTPUT_ACTIVATION",
        "sys",
        "recursion_limit",
        "VARIANTS",
        "VARIANT_COUNTS",
        "block",
        "layer",
        "inner",
        "inner2",
        "inner3",
        "name",
        "names",
        "module",
    }
)
_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))


def generated_names() -> frozenset[str]:
    """Names a generated module defines or uses: the renderers' own and every helper a file
    may carry (helper_library: the helper modules' top-level definitions, ops' own included)."""
    return _OWN_NAMES | helper_names()


def reserved() -> frozenset[str]:
    """Names a spec name must not become: generated_names(), keywords and builtins."""
    return _reserved(helper_names())


@functools.cache
def _reserved(helpers: frozenset[str]) -> frozenset[str]:
    return _OWN_NAMES | helpers | _KEYWORDS


@dataclass
class Ref:
    """A tensor in generated code: the running value, the block input, a variable, or a
    choice between two of them."""

    kind: str  # "prev" | "input" | "var" | "choice"
    var: str = ""
    test: Any = None  # for "choice": a spec value (expression) choosing `a` when true
    a: Ref | None = None
    b: Ref | None = None


@dataclass
class Step:
    path: PathKey
    item: Any
    when: Any  # a spec value, or None
    saves: list[str] = field(default_factory=list)  # variables that also hold the output
    # `shape('name')` in the step's values: what each name refers to where the step is
    shapes: dict[str, Ref] = field(default_factory=dict)


@dataclass
class OpStep(Step):
    op: str = ""
    name: Any = None  # a spec value (template); for unnamed layers the compiled name
    # `auto_names: keras`: the Keras class name of a layer that may be unnamed (no name, or a
    # template that may give None), which generated code numbers as Keras does (KerasNames)
    auto: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)  # given + per-op defaults
    inputs: list[Ref] = field(default_factory=list)
    trainable: Any = True
    nodes: list[Node] = field(default_factory=list)  # what it expanded to, as compiled
    # called again by `apply:` items: Keras code keeps the layer in this variable
    layer_var: str = ""
    reversible: bool = False  # an embedding called again in reverse (ReversibleEmbedding)


@dataclass
class ApplyStep(Step):
    """An `apply:` item: the layer of `target` (an op step of the same block or level)
    called again on `inputs`; `reverse` calls an embedding in reverse (a tied head)."""

    target: OpStep | None = None
    name: Any = None
    reverse: bool = False
    inputs: list[Ref] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)


@dataclass
class CallStep(Step):
    block: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    input: Ref | None = None
    more: list[Ref] = field(default_factory=list)  # a block's inputs after the first


@dataclass
class LoopStep(Step):
    var: str = ""  # the loop variable (a Python name)
    label: str = ""
    start: int = 0
    count: Any = 0
    body: list[Step] = field(default_factory=list)
    input: Ref | None = None


@dataclass
class Block:
    name: str  # the spec's block name
    func: str  # Python function name (Keras)
    cls: str  # Python class name (PyTorch)
    args: dict[str, ParamDecl]
    body: list[Step]
    doc: str
    params: list[str] = field(default_factory=list)  # spec params it reads (transitively)
    uses_input: bool = False
    more: list[str] = field(default_factory=list)  # variables of its inputs after the first


@dataclass
class Structure:
    compiled: Compiled
    names: dict[str, str]  # spec name (param, argument, loop variable) -> Python name
    inputs: list[tuple[str, Any]]  # graph inputs: (Python variable, shape spec value)
    body: list[Step]
    blocks: dict[str, Block]
    outputs: list[Ref]
    params: list[str]  # spec params, in declaration order
    used: set[str] = field(default_factory=set)  # variables some reference reads
    shaped: set[str] = field(default_factory=set)  # variables whose shape shape() reads

    def name(self, spec_name: str) -> str:
        return self.names.get(spec_name, spec_name)


def located_error(
    compiled: Compiled, path: PathKey, message: str, hint: str, code: str = "E120"
) -> SpecError:
    """A backend's refusal of the spec item at `path` (E120: code cannot express it)."""
    loc = compiled.loaded.doc.loc(path)
    return SpecError([Diagnostic(code, message, loc, hint=hint)])


def model_name(s: Structure) -> str:
    """The model's name: the spec's, qualified by the variant it was compiled for."""
    compiled = s.compiled
    name = compiled.loaded.spec.name
    return name if compiled.variant is None else f"{name}_{compiled.variant}"


def class_name(name: str, taken: set[str]) -> str:
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    out = "".join(p[:1].upper() + p[1:] for p in parts) or "Model"
    out = out if out[0].isalpha() else "Model" + out
    while out in taken or out in reserved():
        out += "_"
    return out


def identifier(text: str, taken: set[str], fallback: str) -> str:
    """A Python identifier from text, distinct from `taken` and reserved names."""
    out = re.sub(r"[^0-9A-Za-z_]+", "_", text).strip("_") or fallback
    if out[0].isdigit():
        out = f"{fallback}_{out}"
    while out in taken or out in reserved() or out.startswith("__"):
        out += "_"
    return out


class _Walker:
    def __init__(self, compiled: Compiled):
        self.compiled = compiled
        self.spec = compiled.loaded.spec
        self.ops = load_all()
        self.names: dict[str, str] = {}
        self.taken: set[str] = set()
        self.by_item: dict[PathKey, list[Node]] = {}
        for node in compiled.graph.nodes:
            self.by_item.setdefault(node.origin.item, []).append(node)
        self.input_vars: dict[str, str] = {}
        self.used: set[str] = set()  # variables a reference reads (ids nothing reads are not)
        self.shaped: set[str] = set()  # variables whose shape a shape('name') reads

    def py(self, spec_name: str) -> str:
        if spec_name not in self.names:
            self.names[spec_name] = identifier(spec_name, self.taken, "v")
            self.taken.add(self.names[spec_name])
        return self.names[spec_name]

    def fresh(self, text: str, fallback: str) -> str:
        var = identifier(text, self.taken, fallback)
        self.taken.add(var)
        return var

    # -- references ---------------------------------------------------------------------------
    def ref(self, raw: Any, path: PathKey, scope: _Scope) -> Ref:
        if is_template(raw):
            parts = split_template(raw)
            if len(parts) == 1 and parts[0][0]:
                return self._choice(parse(parts[0][1]).body, path, scope)
            raise located_error(
                self.compiled,
                path,
                "a reference built from text and expressions cannot be generated as code",
                "refer to layers with 'prev', 'input', an id, a layer name, or a conditional "
                "between them: ${'shortcut' if conv_shortcut else 'input'}",
            )
        return self._literal(str(raw), path, scope)

    def _choice(self, node: ast.expr, path: PathKey, scope: _Scope) -> Ref:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return self._literal(node.value, path, scope)
        if isinstance(node, ast.IfExp):
            test = "${" + ast.unparse(node.test) + "}"
            return Ref(
                "choice",
                test=test,
                a=self._choice(node.body, path, scope),
                b=self._choice(node.orelse, path, scope),
            )
        raise located_error(
            self.compiled,
            path,
            f"the reference '${{{ast.unparse(node)}}}' cannot be generated as code",
            "compute a reference as a conditional between names: "
            "${'shortcut' if conv_shortcut else 'input'}",
        )

    def _literal(self, name: str, path: PathKey, scope: _Scope, shape: bool = False) -> Ref:
        """The reference `name` (`shape`: only its shape is read)."""
        used = self.shaped if shape else self.used
        if name == "prev":
            return Ref("prev")
        if name == "input":
            scope.uses_input = True
            return Ref("input")
        for s in scope.chain():
            if name in s.ids:
                used.add(s.ids[name])
                return Ref("var", s.ids[name])
            if name in s.aliases:  # a block's first input, by the name the block gives it
                scope.uses_input = True
                return s.aliases[name]
        if name in self.input_vars and scope.chain()[-1].top:
            return Ref("var", self.input_vars[name])
        nodes = [n for n in self.compiled.graph.nodes if n.name == name]
        step = scope.find_step(nodes[0].origin.item) if nodes else None
        if step is not None and is_template(getattr(step, "name", None)):
            step = None  # named by a template: which expansion is meant is not static
        if step is None:
            raise located_error(
                self.compiled,
                path,
                f"'{name}' is not a layer of this block or of this level of the spec, "
                "so generated code cannot refer to it",
                "give the layer an id in the same block (id: skip) and refer to that, or "
                "pass it in as the block's input",
            )
        var = next((v for v in step.saves if v), None)
        if var is None:
            var = self.fresh(name, "t")
            step.saves.append(var)
        used.add(var)
        return Ref("var", var)

    # -- items --------------------------------------------------------------------------------
    def items(self, items: list[Any], path: PathKey, scope: _Scope) -> list[Step]:
        return [self.item(item, (*path, i), scope) for i, item in enumerate(items)]

    def item(self, item: Any, path: PathKey, scope: _Scope) -> Step:
        if isinstance(item, BlockCall):
            step: Step = self.call(item, path, scope)
        elif isinstance(item, Repeat):
            step = self.loop(item, path, scope)
        elif isinstance(item, Apply):
            step = self.apply(item, path, scope)
        else:
            step = self.op(item, path, scope)
        for name in shape_calls(step_values(step)):
            if name is None:
                raise located_error(
                    self.compiled,
                    path,
                    "shape() of a computed name cannot be generated as code",
                    "call shape() with a name written out: shape('stem_conv'), shape('prev')",
                )
            step.shapes[name] = self._literal(name, path, scope, shape=True)
        if item.id is not None:
            # items that share an id share its variable: the last one that ran holds it
            var = scope.ids.get(item.id) or self.fresh(item.id, "t")
            step.saves.append(var)
            scope.ids[item.id] = var
            scope.aliases.pop(item.id, None)  # the name now means this item's output
        scope.steps[path] = step
        return step

    def op(self, item: Any, path: PathKey, scope: _Scope) -> OpStep:
        opdef = self.ops[item.op]
        user = {f.name for f in opdef.user_fields}
        attrs = {k: v for k, v in self.spec.defaults.get(item.op, {}).items() if k in user}
        attrs.update({k: getattr(item, k) for k in item.model_fields_set & user})
        inputs = self.inputs_of(item, path, scope)
        nodes = self.by_item.get(path, [])
        name, auto = item.name, None
        if self.spec.auto_names == "keras" and (name is None or _may_be_none(name)):
            auto = keras_name(keras_layer(item.op, attrs).cls)
        elif name is None:
            if scope.dynamic or len(nodes) != 1:
                raise located_error(
                    self.compiled,
                    path,
                    f"this {item.op} layer needs a name: it is inside a block or a repeat",
                    "add a name template, e.g. name: 'conv${i}'",
                )
            name = nodes[0].name
        return OpStep(
            path,
            item,
            item.when,
            op=item.op,
            name=name,
            auto=auto,
            attrs=attrs,
            inputs=inputs,
            trainable=item.trainable,
            nodes=nodes,
        )

    def apply(self, item: Apply, path: PathKey, scope: _Scope) -> ApplyStep:
        """A layer called again: generated code calls the same Keras layer object and the
        same PyTorch module, so the layer must be made in the same block or level (one
        function's variable, one class's attribute) and unconditionally."""
        target = _applied(scope, item.apply)
        if target is None:
            raise located_error(
                self.compiled,
                (*path, "apply"),
                f"'{item.apply}' is not a layer made before this item in this block or at "
                "this level of the spec, so generated code cannot call it again",
                "apply a layer made by an op item before this one in the same block body, "
                "repeat body or top level (by its literal name or its id)",
            )
        if target.when is not None:
            raise located_error(
                self.compiled,
                (*path, "apply"),
                f"'{item.apply}' exists only when its condition holds, so generated code "
                "cannot call it again unconditionally",
                "apply a layer without `when`, or make the layer unconditional",
            )
        if not target.layer_var:
            literal_name = isinstance(target.name, str) and not is_template(target.name)
            base = target.name if literal_name else target.op
            target.layer_var = self.fresh(f"{base}_layer", "layer")
        target.reversible |= item.reverse
        name = item.name  # (no module or layer of its own: generated code needs no name)
        nodes = self.by_item.get(path, [])
        if name is None and nodes and not scope.dynamic:
            name = nodes[0].name
        return ApplyStep(
            path,
            item,
            item.when,
            target=target,
            name=name,
            reverse=item.reverse,
            inputs=self.inputs_of(item, path, scope),
            nodes=nodes,
        )

    def inputs_of(self, item: Any, path: PathKey, scope: _Scope) -> list[Ref]:
        if item.inputs is None:
            return [Ref("prev")]
        if isinstance(item.inputs, str):
            parts = split_template(item.inputs) if is_template(item.inputs) else []
            if len(parts) == 1 and parts[0][0]:
                tree = parse(parts[0][1]).body
                if isinstance(tree, ast.List | ast.Tuple):  # every input's name
                    where = (*path, "inputs")
                    return [self._choice(e, where, scope) for e in tree.elts]
            return [self.ref(item.inputs, (*path, "inputs"), scope)]
        return [self.ref(r, (*path, "inputs", i), scope) for i, r in enumerate(item.inputs)]

    def call(self, item: BlockCall, path: PathKey, scope: _Scope) -> CallStep:
        inputs = self.inputs_of(item, path, scope) if item.inputs is not None else None
        self.block(item.block)
        return CallStep(
            path,
            item,
            item.when,
            block=item.block,
            args=dict(item.args),
            input=inputs[0] if inputs else None,
            more=inputs[1:] if inputs else [],
        )

    def loop(self, item: Repeat, path: PathKey, scope: _Scope) -> LoopStep:
        inputs = self.inputs_of(item, path, scope) if item.inputs is not None else None
        inner = _Scope(parent=scope, dynamic=True)
        body = self.items(item.body, (*path, "body"), inner)
        scope.uses_input |= inner.uses_input
        reads = set().union(*(step_names(step) for step in walk(body)))
        return LoopStep(
            path,
            item,
            item.when,
            var=self.py(item.var) if item.var in reads else "_",  # `_`: no iteration reads it
            label=item.name or item.var,
            start=item.start,
            count=item.repeat,
            body=body,
            input=inputs[0] if inputs else None,
        )

    def block(self, name: str) -> None:
        if name in self.blocks:
            return
        decl = self.spec.blocks[name]
        self.blocks[name] = Block(name, "", "", dict(decl.args), [], decl.doc)  # recursion guard
        for arg in decl.args:
            self.py(arg)
        scope = _Scope(dynamic=True)
        names = decl.inputs or []
        if names:  # the first is the block's input; the others variables it takes
            scope.aliases[names[0]] = Ref("input")
        more = [self.fresh(n, "t") for n in names[1:]]
        scope.ids.update(zip(names[1:], more, strict=True))
        self.used.update(more)
        body = self.items(decl.body, ("blocks", name, "body"), scope)
        block = self.blocks.pop(name)
        block.body, block.uses_input, block.more = body, scope.uses_input, more
        self.blocks[name] = block  # callees first: definition order in the generated file

    # -- the whole spec -----------------------------------------------------------------------
    def run(self) -> Structure:
        self.blocks: dict[str, Block] = {}
        for p in self.spec.params:
            self.py(p)
        inputs = []
        for decl in self.spec.inputs:
            inputs.append((self.fresh(decl.name, "x"), decl.shape))
            self.input_vars[decl.name] = inputs[-1][0]
        scope = _Scope(dynamic=False, top=True)
        body = self.items(self.spec.layers, ("layers",), scope)
        outputs = (
            [Ref("prev")]
            if self.spec.outputs is None
            else [self.ref(r, ("outputs", i), scope) for i, r in enumerate(self.spec.outputs)]
        )
        for block in self.blocks.values():
            block.func = self.fresh(block.name, "block")
        taken = set(self.taken)
        for block in self.blocks.values():
            block.cls = class_name(block.name, taken)
            taken.add(block.cls)
        self._params_used()
        return Structure(
            self.compiled,
            self.names,
            inputs,
            body,
            self.blocks,
            outputs,
            list(self.spec.params),
            self.used,
            self.shaped,
        )

    def _params_used(self) -> None:
        """Which spec parameters each block reads, itself or through the blocks it calls."""
        params = set(self.spec.params)
        direct: dict[str, set[str]] = {}
        calls: dict[str, set[str]] = {}
        for name, block in self.blocks.items():
            bound = set(block.args) | set(SHAPE_NAMES)
            reads: set[str] = set()
            callees: set[str] = set()
            for decl in block.args.values():
                reads |= value_names(decl.default)
            for step in walk(block.body):
                reads |= step_names(step)
                if isinstance(step, LoopStep):
                    bound.add(step.item.var)
                if isinstance(step, CallStep):
                    callees.add(step.block)
            direct[name] = (reads - bound) & params
            calls[name] = callees
        for name, block in self.blocks.items():  # callees come first
            used = set(direct[name])
            for callee in calls[name]:
                used |= set(self.blocks[callee].params)
            block.params = [p for p in self.spec.params if p in used]


@dataclass
class _Scope:
    parent: _Scope | None = None
    dynamic: bool = False  # inside a block or a repeat: expanded more than once
    top: bool = False  # the spec's top level (graph inputs are in scope)
    ids: dict[str, str] = field(default_factory=dict)
    steps: dict[PathKey, Step] = field(default_factory=dict)
    uses_input: bool = False
    aliases: dict[str, Ref] = field(default_factory=dict)  # a block's first input's name

    def __post_init__(self) -> None:
        if self.parent is not None:
            self.dynamic = self.dynamic or self.parent.dynamic

    def chain(self) -> list[_Scope]:
        out: list[_Scope] = []
        s: _Scope | None = self
        while s is not None:
            out.append(s)
            s = s.parent
        return out

    def find_step(self, path: PathKey) -> Step | None:
        for s in self.chain():
            if path in s.steps:
                return s.steps[path]
        return None


def _applied(scope: _Scope, name: str) -> OpStep | None:
    """The op step an `apply:` names in this scope (by its literal name or its id): the
    latest before it; an apply of an apply calls the first layer."""
    for step in reversed(list(scope.steps.values())):
        if getattr(step.item, "id", None) == name or (
            isinstance(step, OpStep | ApplyStep) and step.item.name == name
        ):
            if isinstance(step, ApplyStep):
                return step.target
            return step if isinstance(step, OpStep) else None
    return None


def runs(steps: list[Step]) -> list[tuple[Any, list[Step]]]:
    """Consecutive steps under the same `when` (None: unconditional, one step a run): each
    run becomes one `if` in generated code."""
    out: list[tuple[Any, list[Step]]] = []
    for step in steps:
        when = None if step.when is True else step.when
        # a condition on prev_shape is evaluated afresh: the step before may change it
        fresh = when is not None and "prev_shape" in value_names(when)
        if when is not None and not fresh and out and out[-1][0] == when:
            out[-1][1].append(step)
        else:
            out.append((when, [step]))
    return out


def _may_be_none(name: Any) -> bool:
    """Whether a name template may give None (an automatic name): it says None."""
    return is_template(name) and re.search(r"\bNone\b", name) is not None


def uses_auto_names(
    s: Structure,
    steps: list[Step],
    counts: Callable[[OpStep], bool] = lambda step: True,
    seen: frozenset[str] = frozenset(),
) -> bool:
    """Whether the steps (and the blocks they call) make layers with automatic Keras names
    that generated code `counts`: then it takes the model's KerasNames counter."""
    for step in walk(steps):
        if isinstance(step, OpStep) and step.auto is not None and counts(step):
            return True
        if (
            isinstance(step, CallStep)
            and step.block not in seen
            and uses_auto_names(s, s.blocks[step.block].body, counts, seen | {step.block})
        ):
            return True
    return False


def any_auto_names(s: Structure, counts: Callable[[OpStep], bool] = lambda step: True) -> bool:
    """Whether generated code needs the KerasNames helper."""
    bodies = [s.body, *(b.body for b in s.blocks.values())]
    return any(uses_auto_names(s, body, counts) for body in bodies)


def name_source(src: Any, step: OpStep) -> str:
    """Generated code for a layer's name: its template's source (`src` renders spec values),
    or the next Keras automatic name (`names("conv2d")`, `names("conv2d", <template>)` when
    a template may give None)."""
    if step.auto is None:
        return str(src(step.name))
    given = f", {src(step.name)}" if step.name is not None else ""
    return f"names({step.auto!r}{given})"


def walk(steps: list[Step]) -> list[Step]:
    out: list[Step] = []
    for step in steps:
        out.append(step)
        if isinstance(step, LoopStep):
            out += walk(step.body)
    return out


def step_values(step: Step) -> list[Any]:
    """One step's own spec values (not its loop body's), references' tests aside."""
    values: list[Any] = [step.when]
    if isinstance(step, OpStep):
        values += [step.name, step.trainable, *step.attrs.values()]
    elif isinstance(step, ApplyStep):
        values.append(step.item.name)
    elif isinstance(step, CallStep):
        values += list(step.args.values())
    elif isinstance(step, LoopStep):
        values.append(step.count)
    return [v for v in values if v is not None]


def step_names(step: Step) -> set[str]:
    """Spec names read by one step's own values (not by its loop body)."""
    values = step_values(step)
    if isinstance(step, OpStep | ApplyStep):
        values += [t for r in step.inputs for t in ref_tests(r)]
    if isinstance(step, CallStep | LoopStep) and step.input is not None:
        values += ref_tests(step.input)
    if isinstance(step, CallStep):
        values += [t for r in step.more for t in ref_tests(r)]
    return set().union(*(value_names(v) for v in values))


def functions_used_by(s: Structure) -> set[str]:
    spec = s.compiled.loaded.spec
    values: list[Any] = [d.default for d in spec.params.values()]
    values += [shape for _, shape in s.inputs]
    steps = walk(s.body) + [st for b in s.blocks.values() for st in walk(b.body)]
    values += [d.default for b in s.blocks.values() for d in b.args.values()]
    for step in steps:
        values += step_values(step)
    return set().union(*(functions_used(v) for v in values if v is not None))


def ref_tests(ref: Ref) -> list[Any]:
    """The conditions a (computed) reference reads."""
    if ref.kind != "choice":
        return []
    assert ref.a is not None and ref.b is not None
    return [ref.test, *ref_tests(ref.a), *ref_tests(ref.b)]


def analyse(compiled: Compiled) -> Structure:
    """The spec of a compiled model, structured for code generation; raises a located
    SpecError for what generated code cannot express."""
    try:
        return _Walker(compiled).run()
    except ExprError as exc:  # pragma: no cover - every expression was checked by compile
        raise SpecError([Diagnostic("E120", exc.message)]) from None
