"""The helpers generated files carry, as their modules' source declares them.

A helper is a top-level function or class of a helper module (`py_helpers.py`,
`torch_helpers.py`, ...; or a module an op declares, `TorchOp.helpers`), read from the file
without importing it: rendering source needs no framework. Everything the renderers need to
know about helpers is derived from that source, never listed by hand:

- the helpers a helper uses: the helper names its source reads (`ast`), so a file that carries
  one carries what it calls, subclasses or annotates with;
- the order a file carries them in: dependencies first, otherwise the modules' order and each
  module's own (a stable topological order);
- the classes whose `reset_parameters` the model calls (those that define one: Keras' initial
  values by a rule of their own);
- the names a spec may not shadow (every helper's name).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
# archc's own helper modules, in the order generated files carry their helpers
TORCH_MODULES = ("py_helpers", "torch.helpers", "torch.init_helpers", "torch.sequence_helpers")
KERAS_MODULES = ("keras.helpers", "keras.sequence_helpers")  # the Keras layers files may define

Module = str | Path  # a module of backends/ by dotted name ("torch.helpers"), or a file


@dataclass(frozen=True)
class Helper:
    name: str
    source: str  # decorators included, as inspect.getsource gives it
    module: Path
    definition: ast.FunctionDef | ast.ClassDef = field(repr=False, compare=False)
    own_reset: bool  # a class that defines reset_parameters

    @functools.cached_property
    def reads(self) -> frozenset[str]:
        """The global names its source reads (walked when first asked: `archc check` needs
        the helpers' names only)."""
        return _reads(self.definition)


def module_path(module: Module) -> Path:
    if isinstance(module, str):
        return HERE.joinpath(*module.split(".")).with_suffix(".py")
    return Path(module)


@functools.cache
def read_module(path: Path) -> tuple[Helper, ...]:
    """The top-level functions and classes of a helper module, in its order."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    out = []
    for node in ast.parse(text, str(path)).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
            source = "".join(lines[start - 1 : node.end_lineno]).rstrip() + "\n"
            own_reset = isinstance(node, ast.ClassDef) and any(
                isinstance(item, ast.FunctionDef) and item.name == "reset_parameters"
                for item in node.body
            )
            out.append(Helper(node.name, source, path, node, own_reset))
    return tuple(out)


def _reads(definition: ast.FunctionDef | ast.ClassDef) -> frozenset[str]:
    """The names a definition reads that it does not bind itself (parameters, assignments,
    nested definitions, imports): the globals it uses, its bases, decorators and annotations
    included."""
    loads: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(definition):
        if isinstance(node, ast.Name):
            (loads if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef) and node is not definition:
            bound.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(loads - bound)


class Library:
    """The helpers of some modules: each by name, what it needs, and the order to carry them."""

    def __init__(self, modules: tuple[Module, ...]) -> None:
        self.helpers: dict[str, Helper] = {}
        for module in modules:
            for helper in read_module(module_path(module)):
                seen = self.helpers.get(helper.name)
                if seen is not None:
                    raise ValueError(
                        f"helper '{helper.name}' is defined twice: in {seen.module} and "
                        f"{helper.module}; a generated file can carry one"
                    )
                self.helpers[helper.name] = helper

    @functools.cached_property
    def needs(self) -> dict[str, list[str]]:
        """Each helper's helpers: those its source reads, in the library's order."""
        names = list(self.helpers)
        return {
            name: [n for n in names if n in helper.reads and n != name]
            for name, helper in self.helpers.items()
        }

    def __contains__(self, name: str) -> bool:
        return name in self.helpers

    def carried(self, used: Iterable[str]) -> list[str]:
        """The helpers a file that uses `used` carries: those and every helper they need,
        in the library's order where a helper's needs come before it (a stable topological
        order; helpers that call each other are fine, wherever they are)."""
        wanted = set(used)
        unknown = sorted(wanted - self.helpers.keys())
        if unknown:
            raise KeyError(f"no helper {', '.join(map(repr, unknown))} in the helper modules")
        todo = list(wanted)
        while todo:  # and the helpers they need
            name = todo.pop()
            todo += [n for n in self.needs[name] if n not in wanted]
            wanted.update(self.needs[name])
        out: list[str] = []
        placed: set[str] = set()

        def place(name: str) -> None:
            if name not in placed:
                placed.add(name)
                for need in self.needs[name]:
                    place(need)
                out.append(name)

        for name in self.helpers:
            if name in wanted:
                place(name)
        return out

    def own_reset(self, names: Iterable[str]) -> list[str]:
        """Of `names`, the classes that set their own initial values (reset_parameters)."""
        return [n for n in names if self.helpers[n].own_reset]


@functools.cache
def library(modules: tuple[Module, ...]) -> Library:
    return Library(modules)


def torch_modules() -> tuple[Module, ...]:
    """The modules PyTorch files carry helpers from: archc's own, then those of the ops that
    declare one (`TorchOp.helpers`), in the registry's order."""
    from archc.backends.torch.ops import TORCH_OPS

    extra = (op.helpers for op in TORCH_OPS.values() if op.helpers is not None)
    return (*TORCH_MODULES, *dict.fromkeys(extra))


def torch_library() -> Library:
    return library(torch_modules())


def keras_modules() -> tuple[Module, ...]:
    """The modules Keras files carry layers from: archc's own, then those of the layers that
    declare one (`KerasLayer.helpers`: a plugin's), in the registry's order."""
    from archc.backends.keras.ops import KERAS_LAYERS

    layers = [v for layer in KERAS_LAYERS.values() for v in (layer, *dict(layer.variants).values())]
    extra = (layer.helpers for layer in layers if layer.helpers is not None)
    return (*KERAS_MODULES, *dict.fromkeys(extra))


def keras_library() -> Library:
    return library(keras_modules())


def helper_names() -> frozenset[str]:
    """Every helper a generated file (Keras or PyTorch) may define."""
    return _names(torch_modules(), keras_modules())


@functools.cache
def _names(torch: tuple[Module, ...], keras: tuple[Module, ...]) -> frozenset[str]:
    return frozenset(library(torch).helpers) | frozenset(library(keras).helpers)
