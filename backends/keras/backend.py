"""Keras 3 backend: a spec as a Keras source file, and the live model that file builds.

Generated code reads like `keras.applications`: one function per spec block, loops for
repeats, `if` for conditions, layer names as the spec's templates (so the seed's summary
matches row for row), and `build_model(**params)` taking the spec's parameters. The live
model is the generated module, imported (there is no second implementation to keep equal).
"""

from __future__ import annotations

import os
from typing import Any

from archc.backends import initializers
from archc.backends.codegen import (
    environment,
    header_context,
    helper_source,
    import_source,
    input_axes,
)
from archc.backends.helper_library import keras_modules
from archc.backends.keras.ops import keras_layer
from archc.backends.pysrc import ShapeRef, literal
from archc.backends.structure import (
    ApplyStep,
    Block,
    CallStep,
    LoopStep,
    OpStep,
    Ref,
    Step,
    Structure,
    analyse,
    any_auto_names,
    functions_used_by,
    located_error,
    model_name,
    name_source,
    runs,
    uses_auto_names,
    walk,
)
from archc.backends.writer import (
    Lines,
    Values,
    block_signature,
    coerce_constant,
    computed_defaults,
    formatted,
    keras_shapes,
    loop_bounds,
    param_signature,
    source_wanted,
    variants_context,
)
from archc.compiler.api import Compiled
from archc.compiler.ir import Counts, Graph

NAME = "keras"
_INIT = "keras.initializers."  # a configured initializer is keras.initializers.<class>(...)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is first imported
# TensorFlow's oneDNN CPU convolution returns garbage (up to 1e38) for some strided 'valid'
# convolutions (a 1x2 kernel, stride 2, over a width of 3: tests/backends/strided_valid_conv.yaml,
# found by the long fuzzing profile); its Eigen path is right and no slower here. archc builds
# and verifies Keras models on that path unless the variable is set.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


class _Function:
    """Renders one function body (a block, or build_model) from the spec's steps."""

    def __init__(self, structure: Structure, out: Lines, input_var: str):
        self.s = structure
        self.out = out
        self.input_var = input_var
        self.prev = input_var
        self.values = Values(
            structure,
            keras_shapes(lambda: self.input_var, lambda: self.prev),
            lambda ref: ShapeRef(self.ref(ref), 1),  # shape('name'): the tensor's, batch off
        )
        self.uses_regularizers = False

    def src(self, value: Any) -> str:
        return self.values.src(value)

    def ref(self, ref: Ref) -> str:
        if ref.kind == "prev":
            return self.prev
        if ref.kind == "input":
            return self.input_var
        if ref.kind == "var":
            return ref.var
        assert ref.a is not None and ref.b is not None
        a, b = self.ref(ref.a), self.ref(ref.b)
        return a if a == b else f"({a} if {self.src(ref.test)} else {b})"

    def ensure_x(self) -> None:
        """Make `x` hold the running tensor (before code that may or may not assign it)."""
        if self.prev != "x":
            self.out(f"x = {self.prev}")
            self.prev = "x"

    def steps(self, steps: list[Step]) -> None:
        for when, run in runs(steps):
            if when is None:
                self.step(run[0])
                continue
            self.values.step = run[0]
            self.ensure_x()
            with self.out.indented(f"if {self.src(when)}:"):
                for step in run:
                    self.step(step)
                self.prev = "x"

    def step(self, step: Step) -> None:
        self.values.step = step
        if isinstance(step, OpStep):
            self.op(step)
        elif isinstance(step, CallStep):
            self.call(step)
        elif isinstance(step, LoopStep):
            self.loop(step)
        elif isinstance(step, ApplyStep):
            self.apply(step)
        for var in step.saves:
            if var in self.s.used or var in self.s.shaped:
                self.out(f"{var} = {self.prev}")

    def op(self, step: OpStep) -> None:
        layer = keras_layer(step.op, step.attrs)
        if layer.wrong is not None:
            graph = self.s.compiled.graph
            for node in step.nodes:
                shapes = [graph.node(i).shape or () for i in node.inputs]
                wrong = layer.wrong(node.attrs, shapes)
                if wrong is not None:
                    why, hint = wrong
                    message = f"keras backend: {why}"
                    raise located_error(self.s.compiled, step.path, message, hint, "E121")

        def attr(key: str) -> str | None:
            return self.src(step.attrs[key]) if key in step.attrs else None

        ins = [self.ref(r) for r in step.inputs]
        pairs = layer.args(attr)
        if layer.shaped is not None:
            pairs += layer.shaped(attr, self.rank(step), ins[0])
        args = [src if kw is None else f"{kw}={src}" for kw, src in pairs]
        for key in initializers.given(step):  # Keras' keywords: the attributes' names
            args.append(f"{key}={initializers.source(self.s, step, key, self.src, _INIT)}")
        l2 = step.attrs.get("kernel_l2")
        if layer.regularizes and l2 is not None:
            args.append(f"{layer.regularizes}=regularizers.L2({self.src(l2)})")
            self.uses_regularizers = True
        # Keras' attention builds its projections (sublayers) when first called, and a
        # layer's `trainable` reaches only the sublayers it has: freeze it after the call
        frozen_after = step.trainable is not True and layer.call is not None
        if step.trainable is not True and not frozen_after:
            args.append(f"trainable={self.src(step.trainable)}")
        args.append(f"name={name_source(self.src, step)}")
        call = _call(layer, attr, ins)
        cls = layer.cls if layer.custom else f"layers.{layer.cls}"
        if step.reversible:  # called again in reverse: Keras' own embedding that takes it
            cls = "layers.ReversibleEmbedding"
        if frozen_after or step.layer_var:  # the layer object kept (applied again below)
            var = step.layer_var or "layer"
            self.out(f"{var} = {cls}({', '.join(args)})")
            self.out(f"x = {var}({call})")
            if frozen_after:
                self.out(
                    f"{var}.trainable = {self.src(step.trainable)}  # sublayers too, now built"
                )
        else:
            self.out(f"x = {cls}({', '.join(args)})({call})")
        self.prev = "x"

    def apply(self, step: ApplyStep) -> None:
        """A layer called again (`apply:`): the same layer object, its weights shared."""
        target = step.target
        assert target is not None and target.layer_var

        def attr(key: str) -> str | None:
            return self.src(target.attrs[key]) if key in target.attrs else None

        ins = [self.ref(r) for r in step.inputs]
        call = _call(keras_layer(target.op, target.attrs), attr, ins)
        if step.reverse:  # ReversibleEmbedding: x @ embeddings^T
            call += ", reverse=True"
        self.out(f"x = {target.layer_var}({call})")
        self.prev = "x"

    def rank(self, step: OpStep) -> int | None:
        """The rank of the step's first input (batch excluded), when every node it expanded
        to saw the same."""
        graph = self.s.compiled.graph
        ranks = {len(graph.node(node.inputs[0]).shape or ()) for node in step.nodes}
        return ranks.pop() if len(ranks) == 1 else None

    def call(self, step: CallStep) -> None:
        block = self.s.blocks[step.block]
        source = self.ref(step.input) if step.input is not None else self.prev
        args = [source, *(self.ref(r) for r in step.more)]
        for key, decl in block.args.items():
            if key in step.args:
                args.append(f"{self.s.name(key)}={self.src(coerce_constant(step.args[key], decl))}")
        args += [f"{self.s.name(p)}={self.s.name(p)}" for p in block.params]
        if uses_auto_names(self.s, block.body):
            args.append("names=names")
        self.out(f"x = {block.func}({', '.join(args)})")
        self.prev = "x"

    def loop(self, step: LoopStep) -> None:
        if step.input is not None:
            self.out(f"x = {self.ref(step.input)}")
            self.prev = "x"
        self.ensure_x()
        bounds = loop_bounds(self.src(step.count), step.start)
        with self.out.indented(f"for {step.var} in range({bounds}):"):
            self.steps(step.body)
            self.prev = "x"


def _call(layer: Any, attr: Any, ins: list[str]) -> str:
    """A layer call's arguments: the input, a list of them, or the layer's own (attention)."""
    if layer.call is not None:
        return str(layer.call(attr, ins))
    return ins[0] if len(ins) == 1 else "[" + ", ".join(ins) + "]"


def _block_function(s: Structure, block: Block) -> tuple[str, bool]:
    out = Lines()
    args, computed = block_signature(s, block)
    if uses_auto_names(s, block.body):
        args.append("names: KerasNames")
    fn = _Function(s, out, "inputs")
    with out.indented(
        f"def {block.func}({', '.join(['inputs', *block.more, *(['*', *args] if args else [])])}):"
    ):
        if block.doc:
            out.doc(block.doc)
        computed_defaults(out, fn.values, block.args, computed)
        fn.steps(block.body)
        out(f"return {fn.prev}")
    return out.text(), fn.uses_regularizers


def _build_model(s: Structure) -> tuple[str, bool]:
    spec = s.compiled.loaded.spec
    out = Lines()
    args, computed = param_signature(s)
    fn = _Function(s, out, s.inputs[0][0])
    with out.indented(f"def build_model({', '.join(args)}) -> keras.Model:"):
        out.doc(_build_doc(s))
        computed_defaults(out, fn.values, spec.params, computed)
        if uses_auto_names(s, s.body):
            out("names = KerasNames()  # Keras' automatic layer names, counted in this model")
        for (var, shape), input_decl in zip(s.inputs, spec.inputs, strict=True):
            name = literal(input_decl.name)
            dtype = ', dtype="int32"' if input_decl.dtype == "int" else ""
            out(f"{var} = keras.Input(shape={fn.src(shape)}{dtype}, name={name})")
        fn.prev = s.inputs[-1][0]
        fn.steps(s.body)
        ins = [v for v, _ in s.inputs]
        outs = [fn.ref(r) for r in s.outputs]
        model_in = ins[0] if len(ins) == 1 else "[" + ", ".join(ins) + "]"
        model_out = outs[0] if len(outs) == 1 else "[" + ", ".join(outs) + "]"
        model = f"keras.Model({model_in}, {model_out}, name={literal(model_name(s))})"
        if _repeats(s):  # the depth is a parameter
            out("# Keras walks the graph recursively, a few frames a layer: allow deep networks")
            out("# while it builds the model, and give the interpreter its own limit back")
            out("recursion_limit = sys.getrecursionlimit()")
            out("sys.setrecursionlimit(max(recursion_limit, 20_000))")
            with out.indented("try:"):
                out(f"return {model}")
            with out.indented("finally:"):
                out("sys.setrecursionlimit(recursion_limit)")
        else:
            out(f"return {model}")
    return out.text(), fn.uses_regularizers


def _repeats(s: Structure) -> bool:
    steps = walk(s.body) + [step for b in s.blocks.values() for step in walk(b.body)]
    return any(isinstance(step, LoopStep) for step in steps)


def _custom_layers(s: Structure) -> list[str]:
    """The classes of keras_helpers that the spec's ops use, in a fixed order."""
    steps = walk(s.body) + [step for b in s.blocks.values() for step in walk(b.body)]
    layers = [keras_layer(st.op, st.attrs) for st in steps if isinstance(st, OpStep)]
    return sorted({layer.cls for layer in layers if layer.custom})


def _uses_keras_layers(s: Structure) -> bool:
    """Whether the generated file uses keras.layers (not only classes it defines)."""
    steps = walk(s.body) + [step for b in s.blocks.values() for step in walk(b.body)]
    return any(isinstance(st, OpStep) and not keras_layer(st.op, st.attrs).custom for st in steps)


def _layer_source(cls: str) -> str:
    """A Keras layer class of keras_helpers, keras_sequence_helpers or a plugin's module
    (`KerasLayer.helpers`), read without importing it (rendering, and so `archc check`,
    imports no framework)."""
    return helper_source(cls, keras_modules())


def _build_doc(s: Structure) -> str:
    doc = s.compiled.loaded.spec.doc.strip() or "The network of the spec."
    graph = s.compiled.graph
    tokens = graph.node(graph.inputs[0]).attrs.dtype == "int"
    what = "integer token ids" if tokens else "channels-last input"
    return f"{doc}\n\nTakes {what} of shape (batch, *INPUT_SHAPE)."


def render(compiled: Compiled, out_dir: str | os.PathLike[str] | None = None) -> str:
    """The generated Keras source of a compiled spec (formatted, byte-deterministic)."""
    s = analyse(compiled)
    functions = []
    uses_regularizers = False
    for block in s.blocks.values():
        text, reg = _block_function(s, block)
        functions.append(text)
        uses_regularizers |= reg
    text, reg = _build_model(s)
    functions.append(text)
    uses_regularizers |= reg
    if not source_wanted():  # `archc check`: the walk above raised what Keras refuses
        return ""
    used = functions_used_by(s)
    helpers = [helper_source("make_divisible")] if "make_divisible" in used else []
    if any_auto_names(s):
        helpers.append(helper_source("KerasNames"))
    helpers += [_layer_source(cls) for cls in _custom_layers(s)]
    ctx = header_context(compiled, out_dir)
    ctx.update(
        functions=functions,
        uses_regularizers=uses_regularizers,
        uses_layers=_uses_keras_layers(s),
        uses_sys=_repeats(s),
        input_axes=input_axes(compiled, channels_first=False),
        uses_math=bool(used & {"ceil", "floor"}),
        helpers=helpers,
        **variants_context(compiled),
    )
    return formatted(environment().get_template("keras.py.jinja").render(ctx))


# -- the live model ---------------------------------------------------------------------------
def build(compiled: Compiled) -> Any:
    """The generated model, imported and built (its defaults are the compiled parameters)."""
    return import_source(render(compiled), f"{compiled.graph.name}_keras").build_model()


def build_abstract(module: Any) -> None:
    """Keras allocates every weight as it builds a layer: no shapes-only build."""
    return None


def output_shapes(model: Any, graph: Graph) -> list[tuple[int, ...]]:
    """The shapes of the model's outputs (batch excluded) for inputs of the graph's shapes,
    from Keras' symbolic build: the functional model's own output tensors where its inputs
    have the graph's sizes, else its output spec at those sizes (traced, never run on
    values: a forward pass at full resolution costs more than the build)."""
    import keras

    wanted = [(1, *(node.shape or ())) for node in map(graph.node, graph.inputs)]
    inputs = getattr(model, "inputs", None) or []
    outputs = getattr(model, "outputs", None)
    built = [tuple(x.shape) for x in inputs]
    if outputs and len(built) == len(wanted):
        same = all(b[1:] == w[1:] for b, w in zip(built, wanted, strict=True))
        if same and all(d is not None for y in outputs for d in y.shape[1:]):
            return [tuple(int(d) for d in y.shape[1:]) for y in outputs]
    xs = [
        keras.KerasTensor(shape, dtype="int32" if node.attrs.dtype == "int" else "float32")
        for shape, node in zip(wanted, map(graph.node, graph.inputs), strict=True)
    ]
    ys = model.compute_output_spec(xs if len(xs) > 1 else xs[0], training=False)
    ys = ys if isinstance(ys, list | tuple) else [ys]
    return [tuple(int(d) for d in y.shape[1:]) for y in ys]


def counts(model: Any) -> Counts:
    """Keras' own accounting: trainable_weights and non_trainable_weights."""
    return _counts(model)


def layer_counts(model: Any) -> dict[str, Counts]:
    return {layer.name: _counts(layer) for layer in model.layers}


def _counts(layer: Any) -> Counts:
    t = sum(_size(w) for w in layer.trainable_weights)
    n = sum(_size(w) for w in layer.non_trainable_weights)
    return Counts(t + n, t, n)


def _size(w: Any) -> int:
    size = 1
    for d in w.shape:
        size *= int(d)
    return size


def from_spec(
    spec: str | os.PathLike[str],
    overrides: dict[str, Any] | None = None,
    *,
    variant: str | None = None,
) -> Any:
    """The Python API: a live, count-verified keras.Model from a spec path plus overrides.

    >>> model = from_spec("specs/resnet_preact.yaml", {"nb_classes": 10})
    """
    from archc.backends.compile import live_model

    return live_model(NAME, spec, overrides, variant=variant)
