"""`shape('name')` in expressions: the output shape (batch excluded) of what a reference names
where the item is ('prev', 'input', an id, an earlier layer), in the compiler and in both
generated models, whatever build_model's parameters are.

Expected counts come from the layers' formulas (conv: k*k*in*out + out; dense: in*out + out).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from archc.backends.codegen import import_source
from archc.backends.compile import check_generation, compile_to_file
from archc.backends.keras import backend as keras_backend
from archc.backends.proof.verify import verify
from archc.backends.torch import backend as torch_backend
from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import SpecError
from archc.compiler.load import loads

SPEC = Path(__file__).with_name("shape_calls.yaml")


def expected_total(stages: int, width: int) -> int:
    """tests/backends/shape_calls.yaml by its layers: the image has 3 channels and 8x8 pixels."""
    total = 3 * 3 * 3 * width + width  # stem_conv
    channels = width  # after the pool
    for i in range(stages):
        widen = width * (i + 2)  # shape('stem')[-1] * (i + 2): the stem's width, not prev's
        total += channels * widen + widen
        total += widen * 3 + 3  # back: shape('input')[-1], the model's input: 3
        channels = 3
    reduce = max(1, int(3 * 0.5))  # se: shape('input') is the block's input (3 channels)
    total += 3 * reduce + reduce + reduce * 3 + 3
    return total + 3 * 4 + 4  # head: shape('pool')[0] = 8 / 2 units, on 3 channels


@pytest.mark.parametrize(("stages", "width"), [(2, 8), (3, 5), (1, 2)])
def test_the_compiler_reads_the_named_layers_shapes(stages: int, width: int) -> None:
    compiled = compile_spec(str(SPEC), {"stages": stages, "width": width})
    assert compiled.graph.counts.total == expected_total(stages, width)


def test_the_formula_equals_a_count_by_hand() -> None:
    # defaults: stem 224, widen0 144, back0 51, widen1 96, back1 75, se 4 + 6, head 16
    assert expected_total(2, 8) == 224 + 144 + 51 + 96 + 75 + 4 + 6 + 16 == 616


def test_both_generated_models_read_them_for_other_parameters() -> None:
    compiled = compile_spec(str(SPEC))
    torch_mod = import_source(torch_backend.render(compiled), "shape_calls_torch")
    keras_mod = import_source(keras_backend.render(compiled), "shape_calls_keras")
    for stages, width in [(3, 5), (1, 2)]:
        want = expected_total(stages, width)
        model = torch_mod.build_model(stages=stages, width=width)
        assert torch_backend.counts(model).total == want
        assert keras_backend.counts(keras_mod.build_model(stages=stages, width=width)).total == want
    verify(str(SPEC), {"stages": 3, "width": 5})


def _diagnostic(text: str) -> tuple[str, str, str]:
    with pytest.raises(SpecError) as info:
        check_generation(compile_spec(loads(text, "bad.yaml")))
    diag = info.value.diagnostics[0]
    return diag.code, diag.message, diag.hint


HEAD = "archc: 1\nname: bad\ninputs:\n  - {name: img, shape: [8, 8, 3]}\n"


def test_an_unknown_name_is_a_located_error_with_a_suggestion() -> None:
    text = HEAD + (
        "layers:\n  - {op: conv2d, name: stem_conv, filters: 4, kernel: 1}\n"
        "  - {op: conv2d, name: c, filters: \"${shape('stem_cnv')[-1]}\", kernel: 1}\n"
    )
    code, message, hint = _diagnostic(text)
    assert code == "E030" and "no layer 'stem_cnv' before this item" in message
    assert "stem_conv" in hint


def test_shape_outside_items_says_where_it_is_available() -> None:
    text = (
        HEAD.replace(
            "inputs:", "params:\n  w: {type: int, default: \"${shape('img')[-1]}\"}\ninputs:"
        )
        + "layers:\n  - {op: conv2d, name: c, filters: '${w}', kernel: 1}\n"
    )
    code, message, _ = _diagnostic(text)
    assert code in ("E030", "E021") and "available in an item's values" in message


def test_a_computed_name_is_refused_by_the_backends_at_check() -> None:
    text = HEAD + (
        "layers:\n  - {op: conv2d, name: c0, filters: 4, kernel: 1}\n"
        "  - repeat: 1\n    body:\n"
        "      - {op: conv2d, name: 'd${i}', filters: \"${shape('c' + str(i))[-1]}\", kernel: 1}\n"
    )
    code, message, hint = _diagnostic(text)
    assert code == "E120" and "shape() of a computed name" in message
    assert "shape('stem_conv')" in hint


# -- a mutant: shape('name') read as the running shape (prev) must be caught ------------------
def test_mutant_reading_prev_instead_of_the_named_layer_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from archc.compiler import expand

    real = expand._Expander.layer_shape

    def prev_shape(self: expand._Expander, scope: expand.Scope, name: object) -> object:
        return real(self, scope, "prev")

    monkeypatch.setattr(expand._Expander, "layer_shape", prev_shape)
    with pytest.raises(SpecError) as info:  # the widths no longer fit: se_mul cannot broadcast
        compile_spec(str(SPEC))
    assert info.value.diagnostics[0].code == "E070"
    # and where they still fit, the counts are wrong: the head reads the pool's height
    head = SPEC.read_text(encoding="utf-8").replace("shape('input')", "shape('prev')")
    head = head.replace("se, args", "se, when: false, args")
    total = compile_spec(loads(head, "head_only.yaml")).graph.counts.total
    monkeypatch.undo()
    assert compile_spec(loads(head, "head_only.yaml")).graph.counts.total != total


# -- shapes where generated code must print the index, or keep the names apart -----------------
SIGNED_INDEX = HEAD.replace("[8, 8, 3]", "[6, 5, 3]") + (
    "layers:\n"
    '  - {op: dense, name: d, units: "${in_shape[-(-1)]}"}\n'  # axis 1: 5
    "  - repeat: 2\n    body:\n"
    '      - {op: dense, name: "e${i}", units: "${in_shape[-i] + 1}"}\n'  # -0 is axis 0
)


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_a_signed_index_means_the_axis_the_sandbox_reads(tmp_path: Path, backend: str) -> None:
    spec = tmp_path / "signed.yaml"
    spec.write_text(SIGNED_INDEX, encoding="utf-8")
    # in_shape is the model's input (6, 5, 3) throughout; dense per pixel over the channels,
    # in*out + out: d 3 -> 5 (in_shape[1]), e0 5 -> 6 + 1 (in_shape[-0], axis 0), e1 7 -> 3 + 1
    want = (3 * 5 + 5) + (5 * 7 + 7) + (7 * 4 + 4)
    assert compile_spec(str(spec)).graph.counts.total == want
    result = compile_to_file(spec, backend, tmp_path / "out")  # verifies counts and shapes
    assert result.counts.total == want


SHADOWING_LOOP = HEAD + (
    "layers:\n"
    "  - {op: conv2d, name: conv, filters: 4, kernel: 3, padding: same, id: stem}\n"
    "  - {op: conv2d, name: c2, filters: \"${sum([shape('stem')[-1] for stem in range(2)])}\","
    " kernel: 1}\n"
    "  - {op: conv2d, name: c3, kernel: 1,"
    " filters: \"${sum([shape('stem')[-1] + stem_shape for stem_shape in range(2)])}\"}\n"
)


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_a_loop_variable_named_like_a_shape_variable_does_not_hide_it(
    tmp_path: Path, backend: str
) -> None:
    spec = tmp_path / "shadow.yaml"
    spec.write_text(SHADOWING_LOOP, encoding="utf-8")
    # conv 3x3x3 -> 4; c2: 4 + 4 = 8 filters on 4; c3: (4 + 0) + (4 + 1) = 9 filters on 8
    want = (3 * 3 * 3 * 4 + 4) + (4 * 8 + 8) + (8 * 9 + 9)
    assert compile_spec(str(spec)).graph.counts.total == want
    result = compile_to_file(spec, backend, tmp_path / "out")
    assert result.counts.total == want


@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_a_shape_read_whole_is_the_shape(tmp_path: Path, backend: str) -> None:
    spec = tmp_path / "whole.yaml"
    units = "${len(in_shape) + sum(prev_shape) + sum(shape('img'))}"
    spec.write_text(
        HEAD.replace("[8, 8, 3]", "[6, 5, 3]")
        + f'layers:\n  - {{op: dense, name: d, units: "{units}"}}\n',
        encoding="utf-8",
    )
    # units 3 + (6 + 5 + 3) + (6 + 5 + 3) = 31 on 3 channels: 3 * 31 + 31
    want = 3 * 31 + 31
    assert compile_spec(str(spec)).graph.counts.total == want
    assert compile_to_file(spec, backend, tmp_path / "out").counts.total == want
