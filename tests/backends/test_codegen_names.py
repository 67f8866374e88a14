"""Generated names never shadow what the generated module itself uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from archc.backends.compile import compile_to_file

SPEC = """archc: 1
name: {name}
inputs:
  - {{name: {input}, shape: [6, 5, 3]}}
layers:
  - {{op: conv2d, name: {layer}, filters: 4, kernel: 3, padding: same, strides: 2}}
  - {{op: activation, fn: relu, name: act}}
  - {{op: flatten, name: flat}}
"""


@pytest.mark.parametrize(
    ("name", "input", "layer"),
    [
        ("f", "x", "conv"),  # class F would shadow torch.nn.functional
        ("PARAMS", "SPEC", "INPUT_SHAPE"),
        ("nn", "torch", "math"),
        ("Tensor", "layers", "keras"),
        ("build_model", "regularizers", "F"),
    ],
)
@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_generated_models_run_whatever_the_names(
    tmp_path: Path, backend: str, name: str, input: str, layer: str
) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text(SPEC.format(name=name, input=input, layer=layer), encoding="utf-8")
    # verification imports the file, builds it, counts it and runs a forward pass
    result = compile_to_file(spec, backend, tmp_path / "out")
    assert result.counts == result.compiled.graph.counts


def test_header_does_not_depend_on_where_archc_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import ROOT

    monkeypatch.chdir(ROOT / "specs")
    result = compile_to_file("resnet_preact.yaml", "torch", "../generated", check=True)
    assert not result.changed  # the committed file, byte for byte


def test_variant_and_overrides_name_and_stamp_the_file(tmp_path: Path) -> None:
    import ast

    from tests.conftest import SPECS

    result = compile_to_file(
        SPECS / "mobilenet_v2.yaml", "torch", tmp_path, variant="alpha_0.5", verify=False
    )
    assert result.path.name == "mobilenet_v2_alpha_0_5_torch.py"
    header = result.source.split("SPEC = ", 1)[1].split("\n}\n", 1)[0] + "\n}"
    assert ast.literal_eval(header)["variant"] == "alpha_0.5"

    stamped = compile_to_file(
        SPECS / "resnet_preact.yaml", "keras", tmp_path, {"nb_classes": 7}, verify=False
    )
    header = stamped.source.split("SPEC = ", 1)[1].split("\n}\n", 1)[0] + "\n}"
    assert ast.literal_eval(header)["overrides"] == {"nb_classes": 7}


def test_generated_files_get_ordinary_permissions(tmp_path: Path) -> None:
    import os

    spec = tmp_path / "net.yaml"
    spec.write_text(SPEC.format(name="net", input="x", layer="conv"), encoding="utf-8")
    old = os.umask(0o022)
    try:
        path = compile_to_file(spec, "torch", tmp_path / "out", verify=False).path
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_generated_forward_lets_dead_activations_go() -> None:
    """Like hand-written code, a chain reuses one variable: the seed block's and model's
    forward assign only `x` (the block input stays in its argument), so activations are
    freed as they run."""
    import ast

    from tests.conftest import ROOT

    tree = ast.parse((ROOT / "generated" / "resnet_preact_torch.py").read_text())
    classes = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    for name in ("PreactBottleneck", "Rnpa"):
        forward = next(
            n for n in classes[name].body if isinstance(n, ast.FunctionDef) and n.name == "forward"
        )
        stored = {
            n.id
            for n in ast.walk(forward)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        assert stored == {"x"}, name


def test_overrides_are_recorded_as_checked_values_and_stay_ruff_clean(tmp_path: Path) -> None:
    import numpy as np

    from tests.conftest import SPECS, ruff_problems

    spec = SPECS / "mobilenet_v2.yaml"
    lists = {"filters": [16, 24, 32, 64, 96, 160, 320], "repeats": [1, 2, 3, 4, 3, 3, 1]}
    as_text = {k: str(v).replace(" ", "") for k, v in lists.items()}
    a = compile_to_file(spec, "torch", tmp_path / "a", as_text, from_text=True, verify=False)
    b = compile_to_file(spec, "torch", tmp_path / "b", lists, verify=False)
    assert a.source == b.source  # text from --set and values from Python: the same file
    reg = compile_to_file(
        SPECS / "resnet_preact.yaml", "keras", tmp_path / "c", {"reg": np.float64(1e-3)}
    )  # verified: the file imports and runs
    assert "np." not in reg.source
    for path in (a.path, reg.path):
        assert ruff_problems(path) == ""


def test_wide_merges_and_signatures_stay_ruff_clean(tmp_path: Path) -> None:
    """24-input add and concat, 4 long-named inputs, 4 outputs: every generated line is laid
    out as ruff lays it out, and the model still verifies (counts, shapes, one forward)."""
    from tests.conftest import ruff_problems

    spec = Path(__file__).parent / "wide_merge.yaml"
    for backend in ("torch", "keras"):
        assert ruff_problems(compile_to_file(spec, backend, tmp_path).path) == ""


FOLD = """archc: 1
name: fold
inputs:
  - {{name: x, shape: [9, 7, 3]}}
layers:
  - {{op: zero_pad2d, name: pad, padding: {padding}}}
  - {{op: conv2d, name: conv, filters: 4, kernel: 3, strides: 2}}
{extra}
"""


@pytest.mark.parametrize(
    ("padding", "extra", "folded"),
    [
        ("2", "", True),
        ("[1, 2]", "", True),
        ("[[0, 1], [0, 1]]", "", False),  # asymmetric: a conv's padding cannot express it
        (
            "1",
            "  - {op: flatten, name: flat, inputs: pad}\n"
            "  - {op: flatten, name: flat2, inputs: conv}\n"
            "outputs: [flat, flat2]",
            False,
        ),  # the pad feeds two layers
    ],
)
def test_zero_pads_fold_into_valid_convolutions(
    tmp_path: Path, padding: str, extra: str, folded: bool
) -> None:
    from archc.backends.proof.verify import verify

    spec = tmp_path / "fold.yaml"
    spec.write_text(FOLD.format(padding=padding, extra=extra), encoding="utf-8")
    source = compile_to_file(spec, "torch", tmp_path / "out").source
    assert ("folded into conv's padding" in source) == folded
    assert ("nn.ZeroPad2d(" in source) != folded
    verify(str(spec))  # Keras == the generated PyTorch model, layer by layer
