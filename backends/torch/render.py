"""PyTorch source from a spec's structure: the renderer behind torch_backend.render.

`_Class` renders one nn.Module (a block, a repeat's iteration, or the model): its
constructor, which builds modules and tracks the channels-last shape, and its forward.
Each op item goes through its emitter in torch_ops; helpers the code needs are copied from
torch_helpers into the file.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import replace
from typing import Any

from archc.backends import initializers
from archc.backends.codegen import environment, header_context, helper_source, input_axes
from archc.backends.helper_library import torch_library
from archc.backends.keras.ops import KERAS_LAYERS
from archc.backends.pysrc import ShapeRef, constant, is_constant, literal
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
    class_name,
    functions_used_by,
    generated_names,
    identifier,
    located_error,
    model_name,
    name_source,
    reserved,
    runs,
    step_names,
    uses_auto_names,
    walk,
)
from archc.backends.torch.ops import TORCH_OPS, UNSET, activate_source, activation, torch_pads
from archc.backends.writer import (
    PY_TYPES,
    Lines,
    Values,
    block_signature,
    coerce_constant,
    computed_defaults,
    formatted,
    loop_bounds,
    param_signature,
    prune_dead_stores,
    py_type,
    source_wanted,
    variants_context,
)
from archc.compiler.api import Compiled, unknown_sizes
from archc.compiler.diagnostics import SpecError
from archc.compiler.names import keras_name

_SHAPES = re.compile(r"\w*shape")  # the shapes constructors track
_INNER = ("inner", "inner2", "inner3")  # the iterations of nested repeats
# an embedding called in reverse (a tied head): x @ E^T, E its (input_dim, output_dim) weight
REVERSE = "F.linear({x}, {module}.weight)"


def _module_classes() -> frozenset[str]:
    """The Keras classes (snake-case names) of ops that are modules here, as the registries
    declare them now: automatic names of these classes are counted even where a layer of one
    is not a module (see _Class.count_name)."""
    return _classes(tuple((op, e.module is not None) for op, e in TORCH_OPS.items()))


@functools.cache
def _classes(ops: tuple[tuple[str, bool], ...]) -> frozenset[str]:
    return frozenset(keras_name(KERAS_LAYERS[op].cls) for op, module in ops if module)


def _counted(step: OpStep) -> bool:
    """Whether PyTorch code counts a layer's automatic Keras name: a module's, or one of a
    class some module has (_Class.count_name)."""
    return TORCH_OPS[step.op].module is not None or step.auto in _module_classes()


# Attributes of nn.Module (torch 2.13's dir(nn.Module) and an instance's vars, listed here so
# that rendering needs no torch and gives the same source on every machine; a test checks the
# installed torch has no other) and those generated modules set: spec names must not shadow them.
_MODULE_ATTRS = frozenset(
    (
        "T_destination",
        "__annotations__",
        "__call__",
        "__class__",
        "__delattr__",
        "__dict__",
        "__dir__",
        "__doc__",
        "__eq__",
        "__format__",
        "__ge__",
        "__getattr__",
        "__getattribute__",
        "__getstate__",
        "__gt__",
        "__hash__",
        "__init__",
        "__init_subclass__",
        "__le__",
        "__lt__",
        "__module__",
        "__ne__",
        "__new__",
        "__reduce__",
        "__reduce_ex__",
        "__repr__",
        "__setattr__",
        "__setstate__",
        "__sizeof__",
        "__str__",
        "__subclasshook__",
        "__weakref__",
        "_apply",
        "_backward_hooks",
        "_backward_pre_hooks",
        "_buffers",
        "_call_impl",
        "_compiled_call_impl",
        "_forward_hooks",
        "_forward_hooks_always_called",
        "_forward_hooks_with_kwargs",
        "_forward_pre_hooks",
        "_forward_pre_hooks_with_kwargs",
        "_get_backward_hooks",
        "_get_backward_pre_hooks",
        "_get_name",
        "_is_full_backward_hook",
        "_load_from_state_dict",
        "_load_state_dict_post_hooks",
        "_load_state_dict_pre_hooks",
        "_maybe_warn_non_full_backward_hook",
        "_modules",
        "_named_members",
        "_non_persistent_buffers_set",
        "_parameters",
        "_register_load_state_dict_pre_hook",
        "_register_state_dict_hook",
        "_replicate_for_data_parallel",
        "_save_to_state_dict",
        "_slow_forward",
        "_state_dict_hooks",
        "_state_dict_pre_hooks",
        "_version",
        "_wrapped_call_impl",
        "add_module",
        "apply",
        "bfloat16",
        "buffers",
        "call_super_init",
        "children",
        "compile",
        "cpu",
        "cuda",
        "double",
        "dump_patches",
        "eval",
        "extra_repr",
        "float",
        "forward",
        "get_buffer",
        "get_extra_state",
        "get_parameter",
        "get_submodule",
        "half",
        "ipu",
        "load_state_dict",
        "modules",
        "mtia",
        "named_buffers",
        "named_children",
        "named_modules",
        "named_parameters",
        "parameters",
        "register_backward_hook",
        "register_buffer",
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_full_backward_hook",
        "register_full_backward_pre_hook",
        "register_load_state_dict_post_hook",
        "register_load_state_dict_pre_hook",
        "register_module",
        "register_parameter",
        "register_state_dict_post_hook",
        "register_state_dict_pre_hook",
        "requires_grad_",
        "set_extra_state",
        "set_submodule",
        "share_memory",
        "state_dict",
        "to",
        "to_empty",
        "train",
        "training",
        "type",
        "xpu",
        "zero_grad",
        "keras_layers",
        "out_shape",
        "reset_parameters",
        "regularization_loss",
        "keras_name",
        "l2",
        "keras_trainable",
    )
)


def _error(s: Structure, step: Step, message: str, hint: str = "") -> SpecError:
    return located_error(s.compiled, step.path, f"torch backend: {message}", hint)


class _Ctx:
    """What an op emitter sees of one op item (see torch_ops.Ctx)."""

    def __init__(
        self,
        cls: _Class,
        step: OpStep,
        attr: str,
        shapes: list[str],
        fold: tuple[int, int] | None = None,
    ):
        self.cls, self.step, self.attr_name = cls, step, attr
        self.fold = fold
        self.shapes = shapes
        self.shape = shapes[0]
        self.module = f"self.{attr}"
        graph = cls.s.compiled.graph
        seen = [[graph.node(i).shape for i in node.inputs] for node in step.nodes]
        self.in_ranks: list[int | None] = []
        for k in range(len(shapes)):
            ranks = {len(shapes_seen[k] or ()) for shapes_seen in seen}
            self.in_ranks.append(ranks.pop() if len(ranks) == 1 else None)
        self.rank = self.in_ranks[0]  # the first input's, when the compiled graph knows it
        outs = {len(node.shape or ()) for node in step.nodes}
        self.out_rank = outs.pop() if len(outs) == 1 else None
        self.broadcasts = any(len(set(s)) > 1 for s in seen)
        # an input of unknown height or width (null): spatial sizes may be None anywhere, also
        # in steps the compiled parameters leave out (another value may take them)
        self.unknown = unknown_sizes(graph)

    def attr(self, key: str) -> str | None:
        if key not in self.step.attrs:
            return None
        return self.cls.src(self.step.attrs[key])

    def const(self, key: str, default: Any = UNSET) -> Any:
        if key not in self.step.attrs:
            return default
        value = self.step.attrs[key]
        return constant(value) if is_constant(value) else UNSET

    def hoisted(self, key: str, default: str) -> str:
        if key not in self.step.attrs:
            return default
        value = self.step.attrs[key]
        if is_constant(value):
            return literal(constant(value))
        name = f"{self.attr_name}_{key}"
        self.cls.init(f"self.{name} = {self.cls.src(value)}")
        return f"self.{name}"

    def helper(self, name: str) -> str:
        self.cls.r.helpers.add(name)
        return name


class _Class:
    """Renders one nn.Module class: its __init__ and forward from the spec's steps."""

    def __init__(self, r: _Renderer, name: str, in_shape: str, input_var: str):
        self.r, self.s, self.name = r, r.s, name
        self.init_lines = Lines(2)
        self.fwd = Lines(2)
        self.attrs: set[str] = set()
        self.step_attr: dict[int, str] = {}
        self.in_shape = in_shape
        self.input_var = input_var
        self.prev = input_var
        # shape('name'): the shape the constructor tracks for what the reference names
        self.values = Values(r.s, self._shape_name, lambda ref: ShapeRef(self.shape_of(ref), 0))
        self.defined: set[str] = set()  # tensor variables forward has defined
        self.bound: set[str] = set()  # variables whose shape the constructor has set
        # (condition source, the conditional groups it was made in) -> what forward tests for
        # it (a flag attribute, or a conditional module's `is not None`): a flag set inside
        # an `if` of the constructor exists only where that `if` held
        self.flags: dict[tuple[str, tuple[int, ...]], str] = {}
        self.groups: tuple[int, ...] = ()  # the conditional groups being rendered, outermost first
        self.group_count = 0
        # a repeat's body class: the class around it, and the tensors of that class its
        # forward takes after x (the input, ids set before the repeat: each iteration sees the
        # ids of the scope around it; an id it sets is its own, as in the compiler)
        self.outer: _Class | None = None
        self.free: list[str] = []
        self.block: Block | None = None  # the spec block this class is (or is inside)
        self.heads: set[int] = set()  # ids of the model's softmax output steps (see _heads)

    def _shape_name(self, name: str) -> Any:
        import ast

        return ast.Name(self.in_shape if name == "in_shape" else "shape")

    def src(self, value: Any) -> str:
        return self.values.src(value)

    def init(self, line: str) -> None:
        self.init_lines(line)

    # -- names ------------------------------------------------------------------------------
    def attr_for(self, step: Step) -> str:
        if id(step) in self.step_attr:
            return self.step_attr[id(step)]
        if isinstance(step, OpStep | ApplyStep):
            op = step.op if isinstance(step, OpStep) else "apply"
            text = step.name if isinstance(step.name, str) else op
            if "${" in text:
                literal_parts = re.sub(r"\$\{[^}]*\}", "_", text)
                words = re.findall(r"[A-Za-z0-9]+", literal_parts)
                alpha = [w for w in words if not w.isdigit()]
                digits = [w for w in words if w.isdigit()]
                text = "_".join(alpha) + "".join(digits) or op
        elif isinstance(step, CallStep):
            text = step.block
        else:
            assert isinstance(step, LoopStep)
            text = step.label
            only = step.body[0] if len(step.body) == 1 else None
            if step.item.name is None and isinstance(only, CallStep):
                text = only.block  # an unnamed repeat of one block: named after the block
        taken = self.attrs | _MODULE_ATTRS
        attr = identifier(text, taken, "layer")
        while attr in taken:
            attr += "_"
        self.attrs.add(attr)
        self.step_attr[id(step)] = attr
        return attr

    # -- references -------------------------------------------------------------------------
    def shape_of(self, ref: Ref) -> str:
        if ref.kind == "prev":
            return "shape"
        if ref.kind == "input":
            return self.in_shape
        if ref.kind == "var":
            return f"{ref.var.rstrip('_')}_shape"
        assert ref.a is not None and ref.b is not None
        a, b = self.shape_of(ref.a), self.shape_of(ref.b)
        return a if a == b else f"({a} if {self.src(ref.test)} else {b})"

    def tensor(self, ref: Ref, step: Step) -> str:
        if ref.kind == "prev":
            return self.prev
        if ref.kind == "input":
            if not self.input_var:
                assert self.outer is not None  # a model's or a block's class has its input
                self.input_var = self.take(self.outer.tensor(ref, step))
            return self.input_var
        if ref.kind == "var":
            if ref.var in self.defined:
                return ref.var
            if self.outer is None:
                raise _error(
                    self.s,
                    step,
                    f"'{ref.var}' is not set before this point of the generated code",
                    "refer to a layer of the same block or level by its id or name",
                )
            return self.take(self.outer.tensor(ref, step))
        assert ref.a is not None and ref.b is not None
        a, b = self.tensor(ref.a, step), self.tensor(ref.b, step)
        if a == b:  # both names are the same tensor here
            return a
        test = self.src(ref.test)
        visible = (self.flags.get((test, self.groups[:k])) for k in range(len(self.groups), -1, -1))
        flag = next((f for f in visible if f is not None), None)
        if flag is None:  # one flag per condition (where the constructor sets it)
            attr = f"use_{self.tensor(ref.a, step)}"
            while attr in self.attrs:
                attr += "_"
            self.attrs.add(attr)
            flag = self.flags[(test, self.groups)] = f"self.{attr}"
            self.init(f"self.{attr} = {test}")
        return f"({self.tensor(ref.a, step)} if {flag} else {self.tensor(ref.b, step)})"

    def take(self, var: str) -> str:
        """A tensor of the class around this repeat body: forward takes it after x."""
        if var not in self.free:
            self.free.append(var)
            self.defined.add(var)
        return var

    def ensure_x(self) -> None:
        if self.prev != "x":
            self.fwd(f"x = {self.prev}")
            self.prev = "x"

    # -- steps ------------------------------------------------------------------------------
    def steps(self, steps: list[Step]) -> None:
        groups = runs(steps)
        i = 0
        while i < len(groups):
            when, run = groups[i]
            nxt = groups[i + 1][1][0] if i + 1 < len(groups) else None
            fold = _foldable(run[0], nxt) if when is None and nxt is not None else None
            if fold is not None:  # a zero pad that the next convolution does
                self.values.step = nxt
                self.op(nxt, fold=(run[0], fold))  # type: ignore[arg-type]
                self.save(nxt)  # type: ignore[arg-type]
                i += 2
                continue
            if when is None:
                self.step(run[0])
            else:
                self.values.step = run[0]  # the first step's `when` is the group's
                self.conditional(run, when)
            i += 1

    def conditional(self, group: list[Step], when: Any) -> None:
        modules = [self.attr_for(s) for s in group if self.has_module(s)]
        for attr in modules:
            self.init(f"self.{attr} = None")
        if modules:
            init_test, fwd_test = self.src(when), f"self.{modules[0]} is not None"
        else:
            flag = f"use_{self.attr_for(group[0])}"
            self.attrs.add(flag)
            self.init(f"self.{flag} = {self.src(when)}")
            init_test = fwd_test = f"self.{flag}"
        if not re.search(r"(?<![.\w])shape\b", init_test):  # a test of the running shape
            # may differ later: any other is the same wherever this class tests it again
            self.flags.setdefault((self.src(when), self.groups), fwd_test)
        self.ensure_x()
        for var in (v for step in group for v in step.saves):
            if var in self.bound or (var not in self.s.used and var not in self.s.shaped):
                continue
            self.bound.add(var)  # bound on both paths (TorchScript needs it; an iteration
            self.init(f"{var.rstrip('_')}_shape = shape")  # may take either); a spec reads
            if var in self.s.used:  # it only where the condition held
                self.fwd(f"{var} = x")
                self.defined.add(var)
        self.group_count += 1
        outer, self.groups = self.groups, (*self.groups, self.group_count)
        with self.init_lines.indented(f"if {init_test}:"), self.fwd.indented(f"if {fwd_test}:"):
            for step in group:
                self.step(step)
            self.prev = "x"
        self.groups = outer

    def has_module(self, step: Step) -> bool:
        if isinstance(step, OpStep):
            return TORCH_OPS[step.op].module is not None
        return not isinstance(step, ApplyStep)  # a call again: the layer's module

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
        self.save(step)

    def save(self, step: Step) -> None:
        """Variables that also hold a step's output (ids, layers referred to by name)."""
        for var in step.saves:
            if var in self.s.used or var in self.s.shaped:
                self.init(f"{var.rstrip('_')}_shape = shape")
                self.bound.add(var)
            if var in self.s.used:
                self.fwd(f"{var} = {self.prev}")
                self.defined.add(var)

    def op(self, step: OpStep, fold: tuple[OpStep, tuple[int, int]] | None = None) -> None:
        """One op item; `fold` is a symmetric zero pad before it that its padding does (one
        kernel instead of a padded copy, as hand-written PyTorch does it)."""
        emitter = TORCH_OPS[step.op]
        attr = self.attr_for(step)
        if fold is not None:
            pad = fold[0]
            pad_ctx = _Ctx(self, pad, attr, [self.shape_of(r) for r in pad.inputs])
            self.init(f"shape = {TORCH_OPS['zero_pad2d'].shape(pad_ctx)}")  # type: ignore[misc]
            names = [n if re.fullmatch(r"\w+", str(n)) else "" for n in (pad.name, step.name)]
            if all(names):  # (names from templates are left out of comments)
                self.fwd(f"# {names[0]}: folded into {names[1]}'s padding")
            self.count_name(pad, "the pad folded into the next convolution")
            step = replace(step, inputs=pad.inputs)
        ctx = _Ctx(self, step, attr, [self.shape_of(r) for r in step.inputs], fold and fold[1])
        if emitter.module is not None:
            extra = ""
            l2 = step.attrs.get("kernel_l2")  # only an op with the attribute has it
            if l2 is not None:
                extra += f", l2={self.src(l2)}"
            if step.trainable is not True:
                extra += f", trainable={self.src(step.trainable)}"
            module = emitter.module(ctx)
            given = initializers.given(step)
            if given:  # reset_parameters draws with them (keras_init_)
                kw = [f"{k}={self.initializer(step, k)}" for k in given]
                module = f"with_initializers({', '.join([module, *kw])})"
                self.r.helpers.update(("with_initializers", "keras_init_"))
            self.r.helpers.add("keras_layer")
            name = name_source(self.src, step)
            self.init(f"self.{attr} = keras_layer({module}, {name}{extra})")
        else:
            self.count_name(step, "a function here, a layer in Keras")
        xs = [self.tensor(r, step) for r in step.inputs]
        if id(step) in self.heads:  # the softmax apart: build_model(logits=True) leaves it out
            key = "fn" if step.op == "activation" else "activation"
            line = emitter.forward(_Linear(ctx, key), xs, f"self.{attr}")
            if line != "x":
                self.fwd(f"x = {line}")
            self.fwd("if not self.logits:")
            self.fwd(f"    x = {activation(ctx, key, 'x')}")
        else:
            self.fwd(f"x = {emitter.forward(ctx, xs, f'self.{attr}')}")
        self.prev = "x"
        new_shape = emitter.shape(ctx) if emitter.shape is not None else None
        if new_shape is not None:
            self.init(f"shape = {new_shape}")
        elif ctx.shape != "shape":  # the input's shape, which is not the running one
            self.init(f"shape = {ctx.shape}")

    def apply(self, step: ApplyStep) -> None:
        """A layer called again (`apply:`): the same module (one set of parameters, which
        `parameters()` lists once); in reverse, an embedding's weight as a linear map's,
        F.linear(x, E) = x @ E^T."""
        target = step.target
        assert target is not None and id(target) in self.step_attr
        attr = self.step_attr[id(target)]
        emitter = TORCH_OPS[target.op]
        again = replace(target, inputs=step.inputs, nodes=step.nodes, saves=[], shapes={})
        ctx = _Ctx(self, again, attr, [self.shape_of(r) for r in step.inputs])
        xs = [self.tensor(r, step) for r in step.inputs]
        if step.reverse:
            self.fwd("x = " + REVERSE.format(x=xs[0], module=f"self.{attr}"))
            self.init(f"shape = (*{ctx.shape}[:-1], self.{attr}.num_embeddings)")
            self.prev = "x"
            return
        self.fwd(f"x = {emitter.forward(ctx, xs, f'self.{attr}')}")
        self.prev = "x"
        new_shape = emitter.shape(ctx) if emitter.shape is not None else None
        if new_shape is not None:
            self.init(f"shape = {new_shape}")
        elif ctx.shape != "shape":
            self.init(f"shape = {ctx.shape}")

    def initializer(self, step: OpStep, key: str) -> str:
        """An initializer attribute as an object: a mapping or a name as the class it stands
        for (the file carries that class only), an expression through keras_initializer
        (which carries every class a name may stand for)."""
        config = initializers.config(self.s, step, key)
        if config is None:
            value = step.attrs[key]
            if is_constant(value):
                cls, source = named_initializer(constant(value))
                self.r.helpers.add(cls)
                return source
            self.r.helpers.add("keras_initializer")
            return f"keras_initializer({self.src(value)})"
        self.r.helpers.add(type(config).__name__)
        return initializers.source(self.s, step, key, self.src, "")

    def count_name(self, step: OpStep, why: str) -> None:
        """An automatic Keras name of a layer this class makes no module for: counted all the
        same where a later module of its Keras class is numbered after it."""
        if step.auto is not None and step.auto in _module_classes():
            self.init(f"{name_source(self.src, step)}  # {why}")

    def block_args(self, block: Block, step: CallStep) -> list[str]:
        args = []
        for key, decl in block.args.items():
            if key in step.args:
                value = self.src(coerce_constant(step.args[key], decl))
                args.append(f"{self.s.name(key)}={value}")
        args += [f"{self.s.name(p)}={self.s.name(p)}" for p in block.params]
        return args + (["names=names"] if uses_auto_names(self.s, block.body, _counted) else [])

    def call(self, step: CallStep) -> None:
        block = self.s.blocks[step.block]
        attr = self.attr_for(step)
        source = step.input or Ref("prev")
        shapes = [self.shape_of(r) for r in [source, *step.more]]
        args = ", ".join([*shapes, *self.block_args(block, step)])
        self.init(f"self.{attr} = {block.cls}({args})")
        self.init(f"shape = self.{attr}.out_shape")
        tensors = [_bare(self.tensor(r, step)) for r in [source, *step.more]]
        self.fwd(f"x = self.{attr}({', '.join(tensors)})")
        self.prev = "x"

    def loop(self, step: LoopStep) -> None:
        attr = self.attr_for(step)
        if step.input is not None:
            self.init(f"shape = {self.shape_of(step.input)}")
        containers = [len(self.init_lines.lines)]
        self.init(f"self.{attr} = nn.Sequential()")
        free, depth = self.loop_init(step, f"self.{attr}", 0, containers)
        source = self.tensor(step.input, step) if step.input is not None else self.prev
        if free:  # each iteration also reads tensors from before the repeat: forward calls
            for at in containers:  # them in loops, from nn.ModuleLists (no forward of one x)
                line = self.init_lines.lines[at]
                self.init_lines.lines[at] = line.replace("nn.Sequential()", "nn.ModuleList()")
            if source == self.prev:
                self.ensure_x()
            else:
                self.fwd(f"x = {source}")
            level, outer = self.fwd.level, f"self.{attr}"
            for inner in _INNER[:depth]:  # nested repeats: nn.Sequentials in nn.Sequentials
                self.fwd(f"for {inner} in {outer}:")
                self.fwd.level, outer = self.fwd.level + 1, inner
            with self.fwd.indented(f"for layer in {outer}:"):
                self.fwd(f"x = layer(x, {', '.join(free)})")
            self.fwd.level = level
        else:
            self.fwd(f"x = self.{attr}({_bare(source)})")
        self.prev = "x"

    def loop_init(
        self, step: LoopStep, target: str, depth: int, containers: list[int]
    ) -> tuple[list[str], int]:
        """Builds a repeat's iterations into `target` (an nn.Sequential, of nn.Sequentials for
        nested repeats, whose lines it adds to `containers`); gives the tensors their forward
        takes after x and how deep in `target` they are."""
        with self.init_lines.indented(
            f"for {step.var} in range({loop_bounds(self.src(step.count), step.start)}):"
        ):
            body = step.body
            only = body[0] if len(body) == 1 else None
            plain = only is not None and only.when is None and not only.saves
            if plain and isinstance(only, CallStep) and only.input is None:
                block = self.s.blocks[only.block]
                args = ", ".join(["shape", *self.block_args(block, only)])
                self.init(f"block = {block.cls}({args})")
                self.init(f"{target}.append(block)")
                self.init("shape = block.out_shape")
                return [], depth
            if plain and isinstance(only, LoopStep) and only.input is None and depth < 3:
                inner = _INNER[depth]
                containers.append(len(self.init_lines.lines))
                self.init(f"{inner} = nn.Sequential()")
                found = self.loop_init(only, inner, depth + 1, containers)
                self.init(f"{target}.append({inner})")
                return found
            cls, names, free = self.r.body_class(step, self)
            args = ", ".join(["shape", *(n if "=" in n else f"{n}={n}" for n in names)])
            self.init(f"layer = {cls}({args})")
            self.init(f"{target}.append(layer)")
            self.init("shape = layer.out_shape")
            return free, depth


class _Renderer:
    def __init__(self, s: Structure):
        self.s = s
        self.helpers: set[str] = set()
        self.classes: list[str] = []
        self.class_names = {b.cls for b in s.blocks.values()}

    def py_type(self, spec_name: str, block: Block | None) -> str:
        params = self.s.compiled.loaded.spec.params
        if block is not None and spec_name in block.args:
            return PY_TYPES[block.args[spec_name].type]
        if spec_name in params:
            return py_type(params[spec_name])
        return "int"  # a loop variable

    def block_class(self, block: Block) -> None:
        cls = _Class(self, block.cls, "in_shape", "inputs")
        cls.block = block
        # a block of several inputs takes their shapes, and forward the tensors, in order
        more = [f"{v.rstrip('_')}_shape: tuple[int, ...]" for v in block.more]
        args = ["self", "in_shape: tuple[int, ...]", *more]
        kw, computed = block_signature(self.s, block)
        if uses_auto_names(self.s, block.body, _counted):
            kw.append("names: KerasNames")
        computed_defaults(cls.init_lines, cls.values, block.args, computed)
        cls.init("shape = in_shape")
        cls.defined.update(["inputs", *block.more])
        cls.steps(block.body)
        cls.init("self.out_shape = shape")
        signature = ", ".join(args + (["*", *kw] if kw else []))
        tensors = ", ".join(f"{v}: Tensor" for v in ["inputs", *block.more])
        self.classes.append(self.class_source(cls, block.doc, signature, tensors))

    def body_class(self, step: LoopStep, outer: _Class) -> tuple[str, list[str], list[str]]:
        """A class for one iteration of a repeat whose body is more than one block call: its
        name, its constructor's arguments, and the tensors of `outer` its forward takes after
        x (the input, ids set before the repeat)."""
        label = step.label if len(step.label) > 1 else f"repeat_{step.label}"  # not class I
        name = class_name(label, self.class_names | reserved())
        self.class_names.add(name)
        names = set()
        for st in walk(step.body):
            names |= step_names(st)
            if isinstance(st, CallStep):
                names |= set(self.s.blocks[st.block].params)
        bound = {st.item.var for st in walk(step.body) if isinstance(st, LoopStep)}
        spec_names = [n for n in self.s.names if n in names - bound]
        cls = _Class(self, name, "in_shape", "")
        cls.block, cls.outer, cls.prev = outer.block, outer, "x"
        cls.steps(step.body)
        cls.init("self.out_shape = shape")
        kw = [f"{self.s.name(n)}: {self.py_type(n, outer.block)}" for n in spec_names]
        args = [f"{self.s.name(n)}" for n in spec_names]
        if "in_shape" in names or cls.input_var:
            kw.append("in_shape: tuple[int, ...]")
            args.append(f"in_shape={outer.in_shape}")
        if uses_auto_names(self.s, step.body, _counted):
            kw.append("names: KerasNames")
            args.append("names=names")
        # other shapes from around the repeat that the constructor reads: those of ids set
        # before it (whose tensors forward takes, or shape('name') reads), the input's
        for shape in _read_first(prune_dead_stores(cls.init_lines.lines, _SHAPES), kw):
            kw.append(f"{shape}: tuple[int, ...]")
            args.append(f"{shape}={outer.in_shape if shape == 'in_shape' else shape}")
        signature = ", ".join(["self", "shape: tuple[int, ...]", *(["*", *kw] if kw else [])])
        doc = f"One iteration of the repeat '{step.label}'."
        fwd_args = ", ".join(f"{v}: Tensor" for v in ["x", *cls.free])
        self.classes.append(self.class_source(cls, doc, signature, fwd_args))
        return name, args, cls.free

    def class_source(self, cls: _Class, doc: str, signature: str, fwd_args: str) -> str:
        out = Lines()
        with out.indented(f"class {cls.name}(nn.Module):"):
            out.doc(doc or f"The spec's block '{cls.name}'.")
            out()
            with out.indented(f"def __init__({signature}) -> None:"):
                out("super().__init__()")
                out.lines += prune_dead_stores(cls.init_lines.lines, _SHAPES)
            out()
            with out.indented(f"def forward(self, {fwd_args}) -> Tensor:"):
                out.lines += cls.fwd.lines
                out(f"return {cls.prev}")
        return out.text()


class _Linear:
    """An op's context whose activation (attribute `key`) reads 'linear': a head's softmax is
    written apart, under `if not self.logits`."""

    def __init__(self, ctx: _Ctx, key: str) -> None:
        self._ctx, self._key = ctx, key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def const(self, key: str, default: Any = UNSET) -> Any:
        return "linear" if key == self._key else self._ctx.const(key, default)

    def attr(self, key: str) -> str | None:
        return repr("linear") if key == self._key else self._ctx.attr(key)


def _heads(s: Structure) -> set[int]:
    """The model's top-level op steps that end in a softmax (a constant `activation: softmax`
    or `fn: softmax`) and whose every node is a model output: the classifier heads."""
    outputs = set(s.compiled.graph.outputs)
    found = set()
    for step in s.body:
        if not isinstance(step, OpStep) or not step.nodes:
            continue
        key = "fn" if step.op == "activation" else "activation"
        if step.attrs.get(key) == "softmax" and all(n.name in outputs for n in step.nodes):
            found.add(id(step))
    return found


def kw_names(kw: list[str]) -> set[str]:
    """The names of a signature's keyword parameters ("name: type = default")."""
    return {k.split(":")[0].strip() for k in kw}


def _model_class(r: _Renderer, cls_name: str) -> tuple[str, bool]:
    """The model class's source, and whether it takes `logits`."""
    s = r.s
    compiled = s.compiled
    spec = compiled.loaded.spec
    first = f"{s.inputs[0][0].rstrip('_')}_shape"
    cls = _Class(r, cls_name, first, s.inputs[0][0])
    kw, computed = param_signature(s)
    computed_defaults(cls.init_lines, cls.values, spec.params, computed)
    if uses_auto_names(s, s.body, _counted):
        cls.init("names = KerasNames()  # Keras' automatic layer names, counted in this model")
    graph = compiled.graph
    for (var, shape), node in zip(s.inputs, graph.inputs, strict=True):
        given, default = cls.src(shape), graph.node(node).shape or ()
        if given in kw_names(kw) and len(default) >= 2 and graph.node(node).attrs.dtype != "int":
            # a shape parameter is channels-last; one given channels-first fails here, saying so
            r.helpers.add("channels_last")
            given = f"channels_last({given!r}, {given}, {literal(default)})"
        cls.init(f"{var.rstrip('_')}_shape = {given}")
        cls.defined.add(var)
    cls.init(f"shape = {s.inputs[-1][0].rstrip('_')}_shape")
    cls.prev = s.inputs[-1][0]
    cls.heads = _heads(s) if "logits" not in kw_names(kw) else set()
    if cls.heads:
        kw.append("logits: bool = False")
        cls.init("self.logits = logits")
        cls.attrs.add("logits")  # a layer called 'logits' gets another attribute name
    cls.steps(s.body)
    outs = [cls.tensor(ref, Step(("outputs",), None, None)) for ref in s.outputs]
    cls.init(
        "self.keras_layers = {m.keras_name: name for name, m in self.named_modules() "
        'if hasattr(m, "keras_name")}'
    )
    cls.init("self.reset_parameters()")
    inputs = ", ".join(f"{v}: Tensor" for v, _ in s.inputs)
    out = Lines()
    with out.indented(f"class {cls_name}(nn.Module):"):
        logits = (
            "\n\nlogits=True leaves out the final softmax: the model returns logits, as "
            "nn.CrossEntropyLoss wants them."
            if cls.heads
            else ""
        )
        out.doc(
            (spec.doc.strip() or "The network of the spec.")
            + f"\n\nTakes {input_words(compiled)} of shape (batch, *INPUT_SHAPE)."
            + logits
        )
        out()
        with out.indented(
            f"def __init__(self, {', '.join(kw)}) -> None:" if kw else "def __init__(self) -> None:"
        ):
            out("super().__init__()")
            out.lines += prune_dead_stores(cls.init_lines.lines, _SHAPES)
        out()
        returns = "Tensor" if len(outs) == 1 else "tuple[Tensor, ...]"
        with out.indented(f"def forward(self, {inputs}) -> {returns}:"):
            out.lines += cls.fwd.lines
            out(f"return {', '.join(outs)}")
    return out.text(), bool(cls.heads)


def render(compiled: Compiled, out_dir: str | os.PathLike[str] | None = None) -> str:
    """The generated PyTorch source of a compiled spec (formatted, byte-deterministic)."""
    s = analyse(compiled)
    r = _Renderer(s)
    for block in s.blocks.values():
        r.block_class(block)
    cls_name = class_name(model_name(s), r.class_names | generated_names())
    model, logits = _model_class(r, cls_name)
    used = functions_used_by(s)
    body = "\n\n\n".join([*r.classes, model])
    used_helpers = set(r.helpers)
    if any_auto_names(s, _counted):
        used_helpers.add("KerasNames")
    if "make_divisible" in used:
        used_helpers.add("make_divisible")
    if not source_wanted():  # `archc check`: the walk above raised what PyTorch refuses
        return ""
    library = torch_library()
    carried = library.carried(used_helpers)  # and the helpers they need, in order
    helpers = [_helper_text(name) for name in carried]
    ctx = header_context(compiled, out_dir)
    graph = compiled.graph
    ctx.update(
        cls=cls_name,
        classes=body,
        helpers=helpers,
        uses_math=bool(used & {"ceil", "floor"})
        or "math.prod" in body
        or any("math." in h for h in helpers),
        uses_f="F." in body or any("F." in h for h in helpers),
        frozen=any(
            isinstance(st, OpStep) and st.op == "batch_norm" and st.trainable is not True
            for st in walk(s.body) + [x for b in s.blocks.values() for x in walk(b.body)]
        ),
        own_reset=library.own_reset(carried),
        initializers="keras_init_" in carried,
        input_words=input_words(compiled),
        input_axes=input_axes(compiled, channels_first=True),
        layout_note=layout_note(compiled),
        logits=logits,
        input_dtypes=input_dtypes(compiled),
        torch_input_shape=input_shape(graph.node(graph.inputs[0]).shape or ()),
        **variants_context(compiled),
    )
    return formatted(environment().get_template("torch.py.jinja").render(ctx))


def _read_first(lines: list[str], params: list[str]) -> list[str]:
    """The `*_shape` variables that constructor lines read before they set them (not params,
    not helper calls like window_shape(...), not attributes like self.out_shape)."""
    known = {p.split(":")[0] for p in params}
    found: list[str] = []
    for line in lines:
        target = re.match(r"\s*(\w+) = (.*)", line)
        text = target.group(2) if target else line
        for name in re.findall(r"(?<![.\w])(\w+_shape)\b(?!\s*\()", text):
            if name not in known and name not in found:
                found.append(name)
        if target:
            known.add(target.group(1))
    return sorted(found)


def _bare(source: str) -> str:
    """A computed reference's conditional without its parentheses, as a call's argument."""
    return source[1:-1] if source.startswith("(") and source.endswith(")") else source


def _foldable(pad: Step, conv: Step) -> tuple[int, int] | None:
    """(top, left) when `pad` is a symmetric, constant zero pad read only by `conv`, the next
    step, a 'valid' convolution; None otherwise."""
    if not (isinstance(pad, OpStep) and isinstance(conv, OpStep)):
        return None
    if pad.op != "zero_pad2d" or conv.op not in ("conv2d", "depthwise_conv2d"):
        return None
    if pad.when is not None or conv.when is not None or pad.saves or conv.inputs != [Ref("prev")]:
        return None
    if pad.shapes or conv.shapes:  # shape('name') in their values: rendered apart
        return None
    padding = pad.attrs.get("padding", 1)
    if conv.attrs.get("padding", "valid") != "valid" or not is_constant(padding):
        return None
    left, right, top, bottom = torch_pads(constant(padding))
    return (top, left) if (left, top) == (right, bottom) else None


def _helper_text(name: str) -> str:
    """A helper's source as a file carries it (`activate` with its table written out)."""
    source = helper_source(name)
    return activate_source(source) if name == "activate" else source


def input_words(compiled: Compiled) -> str:
    """What the model's first input is, in its docstrings."""
    node = compiled.graph.node(compiled.graph.inputs[0])
    if node.attrs.dtype == "int":
        return "integer token ids"
    return "NCHW input" if len(node.shape or ()) >= 3 else "channels-last input"


_FAMILIES = {"glorot": (1.0, "fan_avg"), "he": (2.0, "fan_in"), "lecun": (1.0, "fan_in")}
_PLAIN = {
    "zeros": "Constant(0.0)",
    "ones": "Constant(1.0)",
    "random_normal": "RandomNormal()",
    "random_uniform": "RandomUniform()",
    "truncated_normal": "TruncatedNormal()",
}


def named_initializer(name: str) -> tuple[str, str]:
    """A Keras initializer name as (class, source of the object), the object that
    torch_init_helpers.keras_initializer gives for it at construction (a test holds the two
    equal): a file whose initializers are constant names carries only their classes."""
    family, _, kind = name.rpartition("_")
    if family in _FAMILIES:
        scale, mode = _FAMILIES[family]
        distribution = "uniform" if kind == "uniform" else "truncated_normal"
        return "VarianceScaling", f"VarianceScaling({scale!r}, {mode!r}, {distribution!r})"
    source = _PLAIN[name]  # the compiler accepts no other name
    return source.split("(")[0], source


def layout_note(compiled: Compiled) -> str:
    """The module docstring's word on the input layout (docs/ARCHITECTURE.md, "Layouts")."""
    node = compiled.graph.node(compiled.graph.inputs[0])
    rank = len(node.shape or ())
    if node.attrs.dtype == "int" or rank < 2:
        return ""
    if rank == 2:
        return (
            "Sequences are (batch, steps, channels), channels last as Keras and\n"
            "nn.MultiheadAttention(batch_first=True) take them, not Conv1d's (batch, channels,\n"
            "steps): x.transpose(1, 2) turns one into the other (this model's Conv1d layers, if\n"
            "any, transpose inside). Shape parameters such as input_shape are (steps, channels)."
        )
    return (
        "The spec's shape parameters (build_model's input_shape, where it has one) stay\n"
        "channels-last, (height, width, channels), as the spec writes them."
    )


def input_dtypes(compiled: Compiled) -> list[str]:
    """Each input's torch dtype, where some input holds token ids (none otherwise)."""
    graph = compiled.graph
    dtypes = [graph.node(n).attrs.dtype for n in graph.inputs]
    if "int" not in dtypes:
        return []
    return ["torch.int64" if d == "int" else "torch.float32" for d in dtypes]


def input_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Channels-last logical shape -> the shape a PyTorch model takes: images channels first
    (C, H, W); vectors and sequences (T, C) as they are."""
    return shape if len(shape) <= 2 else (shape[-1], *shape[:-1])
