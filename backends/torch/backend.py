"""PyTorch backend: a spec as a PyTorch source file, and the live model that file builds.

Generated code reads like torchvision: one `nn.Module` class per spec block (constructor
arguments for what varies between calls), `nn.Sequential` for repeats, `None` modules or
flags for conditions, and a model class whose constructor takes the spec's parameters.
Constructors track the channels-last shape (batch excluded) the way hand-written models
track `inplanes`, so every module gets its input size. Every module that is a Keras layer
is tagged with the layer's name; `model.keras_layers` maps Keras layer names to module paths,
and weights transfer through it. The live model is the generated module, imported.
"""

from __future__ import annotations

import os
from typing import Any

from archc.backends.codegen import import_source
from archc.backends.torch.render import input_shape, render
from archc.compiler.api import Compiled
from archc.compiler.ir import Counts, Graph

NAME = "torch"
__all__ = [
    "build",
    "build_abstract",
    "counts",
    "from_spec",
    "input_shape",
    "layer_counts",
    "output_shapes",
    "render",
]


# -- the live model ---------------------------------------------------------------------------
def build(compiled: Compiled) -> Any:
    """The generated model, imported and built (its defaults are the compiled parameters)."""
    return import_source(render(compiled), f"{compiled.graph.name}_torch").build_model()


def build_abstract(module: Any) -> Any:
    """The generated module's model on the `meta` device: every parameter and buffer has its
    shape and no storage, so a model of any size builds in moments (and runs, shapes only)."""
    import torch

    with torch.device("meta"):
        return module.build_model()


def output_shapes(model: Any, graph: Graph) -> list[tuple[int, ...]]:
    """Run the model once on zeros (batch 1, on the model's device: `meta` runs shapes only);
    the channels-last shapes of its outputs."""
    import torch

    model.eval()
    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    xs = [
        torch.zeros(
            1,
            *input_shape(graph.node(n).shape or ()),
            device=device,
            dtype=torch.long if graph.node(n).attrs.dtype == "int" else None,
        )
        for n in graph.inputs
    ]
    with torch.no_grad():
        ys = model(*xs)
    ys = ys if isinstance(ys, tuple) else (ys,)
    return [(*y.shape[2:], y.shape[1]) if y.dim() > 3 else tuple(y.shape[1:]) for y in ys]


def counts(model: Any) -> Counts:
    """trainable = parameters with requires_grad; non-trainable = frozen parameters plus
    floating-point buffers (BN running statistics), never num_batches_tracked."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return Counts(trainable + frozen + buffers, trainable, frozen + buffers)


def layer_counts(model: Any) -> dict[str, Counts]:
    """Counts per Keras layer name (modules tagged with one)."""
    return {name: counts(model.get_submodule(path)) for name, path in model.keras_layers.items()}


def from_spec(
    spec: str | os.PathLike[str],
    overrides: dict[str, Any] | None = None,
    *,
    variant: str | None = None,
) -> Any:
    """The Python API: a live, count-verified nn.Module from a spec path plus overrides.

    >>> model = from_spec("specs/resnet_preact.yaml", {"nb_classes": 10})
    """
    from archc.backends.compile import live_model

    return live_model(NAME, spec, overrides, variant=variant)
