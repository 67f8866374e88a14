"""`auto_names: keras`: layers a spec leaves unnamed take the names Keras gives them (the
class's snake-case name, numbered per class after the first, across the model in creation
order), in the IR and in both generated models, whatever build_model's parameters are.

The reference is Keras itself: the same network written by hand without names, built after
`keras.backend.clear_session()` (which restarts Keras' per-process counters).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import pytest
from keras import layers
from keras.src.utils.naming import to_snake_case

from archc.backends.codegen import helper_source, import_source
from archc.backends.compile import VerificationError
from archc.backends.keras import backend as keras_backend
from archc.backends.keras.ops import KERAS_LAYERS, keras_layer
from archc.backends.proof.verify import verify
from archc.backends.torch import render as torch_render
from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import SpecError
from archc.compiler.load import loads
from archc.compiler.names import keras_name
from archc.compiler.ops import load_all

SPEC = Path(__file__).with_name("auto_names.yaml")


def by_hand(blocks: int, extra: bool) -> keras.Model:
    """tests/backends/auto_names.yaml in Keras' layers API, every layer but one unnamed."""

    def unit(x: Any, name: str | None = None) -> Any:
        y = layers.ZeroPadding2D(1)(x)
        y = layers.Conv2D(4, 3, name=name)(y)
        y = layers.BatchNormalization()(y)
        y = layers.Activation("relu")(y)
        return layers.Add()([x, y])

    keras.backend.clear_session()
    img = keras.Input((8, 8, 3), name="img")
    x = layers.Conv2D(4, 1)(img)
    x = unit(x, "stem")
    for _ in range(blocks):
        x = unit(x)
        x = layers.ZeroPadding2D(((0, 1), (0, 1)))(x)
        x = layers.MaxPooling2D(2, strides=1)(x)
    if extra:
        x = layers.Conv2D(4, 1)(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(img, layers.Dense(3)(x))


def layer_names(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers if layer.name != "img"]


def test_every_op_is_named_as_keras_names_its_layer_class() -> None:
    for op, opdef in load_all().items():
        if op == "input":
            continue
        layer = KERAS_LAYERS[op]  # the class the Keras backend emits, named by Keras
        # the class's own name (keras.layers.GroupQueryAttention is GroupedQueryAttention)
        assert keras_name(opdef.title) == to_snake_case(layer.class_name or layer.cls), op
        for _, variant in layer.variants:  # e.g. an add with scales is a ScaledAdd
            assert keras_name(variant.cls) == to_snake_case(variant.cls), op
    for cls in ("Conv2DTranspose", "UpSampling2D", "ReLU", "PReLU", "MultiHeadAttention"):
        assert keras_name(cls) == to_snake_case(cls)


# one spec attribute setting per Keras variant (an op's layer class chosen by an attribute)
VARIANT_ATTRS = {
    ("add", "scales"): {"scales": [1, 0.5]},
    ("activation", "alpha"): {"fn": "leaky_relu", "alpha": 0.1},
    ("activation", "approximate"): {"fn": "gelu", "approximate": True},
    ("lstm", "bidirectional"): {"units": 3, "bidirectional": True},
    ("gru", "bidirectional"): {"units": 3, "bidirectional": True},
    ("simple_rnn", "bidirectional"): {"units": 3, "bidirectional": True},
    ("grouped_query_attention", "rope"): {
        "head_dim": 2,
        "num_query_heads": 2,
        "num_key_value_heads": 1,
        "rope": True,
    },
}


def test_the_compiler_and_the_keras_backend_choose_the_same_variant_class() -> None:
    """The compiler names a layer by OpDef.layer_type (resolved attributes); the Keras backend
    makes keras_layer(op, attributes).cls: the same class for each variant."""
    ops = load_all()
    variants = {(op, key) for op, layer in KERAS_LAYERS.items() for key, _ in layer.variants}
    assert variants == set(VARIANT_ATTRS)  # a new variant needs its setting here
    for (op, _), attrs in VARIANT_ATTRS.items():
        resolved = ops[op].adapter().validate_python(attrs)
        assert ops[op].layer_type(resolved) == keras_layer(op, attrs).cls, op


@pytest.mark.parametrize(("blocks", "extra"), [(2, True), (3, False), (0, True)])
def test_ir_and_both_models_name_layers_as_keras_does(blocks: int, extra: bool) -> None:
    want = layer_names(by_hand(blocks, extra))
    assert "conv2d_1" in want or blocks == 0  # the reference does number them
    overrides = {"blocks": blocks, "extra": extra}
    compiled = compile_spec(str(SPEC), overrides)
    graph = compiled.graph
    assert [n.name for n in graph.nodes if n.name not in graph.inputs] == want
    # the generated module, built with other parameters than it was generated for, and twice
    # in one process (Keras' own counters would go on: conv2d_4, ...)
    mod = import_source(keras_backend.render(compile_spec(str(SPEC))), "auto_names_keras")
    assert layer_names(mod.build_model(**overrides)) == want
    assert layer_names(mod.build_model(**overrides)) == want
    verify(str(SPEC), overrides)  # PyTorch's modules carry the same Keras names


def test_a_name_template_may_give_none_only_with_keras_auto_names() -> None:
    text = SPEC.read_text(encoding="utf-8").replace("auto_names: keras\n", "")
    with pytest.raises(SpecError) as info:
        compile_spec(loads(text, "no_auto.yaml"))
    diag = info.value.diagnostics[0]
    assert diag.code == "E041" and "gave None" in diag.message
    line = text[: text.index("${name if name else None}")].count("\n") + 1  # the conv's name
    assert diag.location is not None and diag.location.line == line
    assert "auto_names: keras" in diag.hint


# -- mutants: each must make verify fail ------------------------------------------------------
def test_mutant_numbering_from_one_in_pytorch_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def mutated(name: str, *args: Any) -> str:
        source = helper_source(name, *args)
        if name == "KerasNames":
            source = source.replace('base if n == 0 else f"{base}_{n}"', 'f"{base}_{n + 1}"')
            assert "n + 1" in source
        return source

    monkeypatch.setattr(torch_render, "helper_source", mutated)
    with pytest.raises(VerificationError) as info:
        verify(str(SPEC))
    # the modules read back against the IR (E114) before any number is computed
    messages = [d.message for d in info.value.diagnostics]
    assert {d.code for d in info.value.diagnostics} == {"E114"}
    assert "the PyTorch model has no module for 'conv2d'" in messages, messages


def test_mutant_not_counting_folded_pads_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # PyTorch makes no module for a pad folded into a convolution; Keras counts that layer,
    # so the pads PyTorch keeps are zero_padding2d_2 and _4: uncounted, they would be
    # zero_padding2d and _1
    monkeypatch.setattr(torch_render._Class, "count_name", lambda self, step, why: None)
    with pytest.raises(VerificationError) as info:
        verify(str(SPEC))
    (diag,) = info.value.diagnostics
    # the first pad PyTorch keeps calls itself zero_padding2d, the folded one's name: its
    # input, read back, is not what the IR's zero_padding2d reads (E114, before verify's
    # numbers would show it at that layer)
    assert diag.code == "E114" and diag.message.startswith("the input of module 'zero_padding2d'")
