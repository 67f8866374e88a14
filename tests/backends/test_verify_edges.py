"""verify's edges: never passing on NaN, odd inputs, inputs as outputs, computed inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from archc.backends.proof.verify import RTOL, Report, _compare, verify
from archc.compiler.api import compile_spec
from archc.compiler.ir import Counts
from tests.conftest import SEED


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_difference_never_passes(bad: float) -> None:
    diff, limit = _compare(np.array([1.0, bad]), np.array([1.0, 0.0]), atol=1e-5)
    assert not diff <= limit


def test_shapes_that_differ_never_pass() -> None:
    diff, limit = _compare(np.zeros((2, 3)), np.zeros((3, 2)), atol=1.0)
    assert not diff <= limit


def _report(rows: list[tuple[str, float, float]], atol: float = 1e-5) -> Report:
    counts = Counts(0, 0, 0)
    diff = max((row[1] for row in rows), default=0.0)
    return Report(counts, counts, counts, diff, len(rows), rows=rows, atol=atol)


def test_agreement_states_the_bound_applied_not_atol_alone() -> None:
    # 1.81e-5 is over atol (1e-5) and within the bound 1e-5 + 1e-5 * 2.0 applied to layer 'a'
    # (its Keras output at most 2.0 in size)
    report = _report([("a", 1.81e-5, 1e-5 + 1e-5 * 2.0), ("b", 1e-6, 1e-5)])
    assert RTOL == 1e-5
    assert report.agreement() == (
        "max|Δ| = 1.81e-05 at 'a' (its bound 3e-05 = atol 1e-05 + rtol 1e-05·max|y| 2)"
    )
    assert report.bound() == {
        "layer": "a",
        "max_abs_diff": 1.81e-5,
        "limit": pytest.approx(3e-5),
        "atol": 1e-5,
        "rtol": 1e-5,
        "max_abs_value": pytest.approx(2.0),
    }


def test_agreement_names_the_layer_closest_to_its_bound_where_that_is_another() -> None:
    # 'a': 2e-5 of 1e-5 + 1e-5 * 9 = 1e-4 (a fifth); 'b': 9e-6 of 1e-5 (nine tenths)
    report = _report([("a", 2e-5, 1e-4), ("b", 9e-6, 1e-5)])
    assert report.agreement() == (
        "max|Δ| = 2e-05 at 'a' (its bound 0.0001 = atol 1e-05 + rtol 1e-05·max|y| 9); "
        "closest to its bound: 'b', 9e-06 of 1e-05"
    )


def test_agreement_with_a_zero_atol_and_no_layer() -> None:
    report = _report([("a", 3e-6, 1e-5 * 0.5)], atol=0.0)
    assert report.agreement() == (
        "max|Δ| = 3e-06 at 'a' (its bound 5e-06 = atol 0 + rtol 1e-05·max|y| 0.5)"
    )
    assert _report([]).agreement() == "max|Δ| = 0" and _report([]).bound() is None


def test_equal_arrays_pass() -> None:
    diff, limit = _compare(np.ones(4), np.ones(4), atol=1e-5)
    assert diff == 0.0 and diff <= limit


@pytest.mark.parametrize("atol", ["nan", "inf", "-1"])
def test_cli_refuses_a_tolerance_that_cannot_fail(archc, atol: str) -> None:
    result = archc("verify", SEED, "--atol", atol)
    assert result.exit_code == 2
    assert "--atol" in result.output


def test_api_refuses_a_nan_tolerance() -> None:
    with pytest.raises(ValueError, match="atol"):
        verify(str(SEED), atol=float("nan"))


def test_verify_also_runs_an_odd_non_square_input(archc) -> None:
    import json

    result = archc("verify", SEED, "--json")
    assert result.exit_code == 0, result.output
    odd = json.loads(result.stdout)["odd_input"]
    h, w, c = odd["shape"]
    assert h % 2 == 1 and w % 2 == 1 and h != w and c == 3
    # every layer with a module of its own (16 conv, 16 BN, the average pool) and the output
    assert odd["layers_checked"] == 16 + 16 + 1 + 1 and odd["max_abs_diff"] <= 1e-5


def test_odd_input_is_skipped_when_the_input_is_fixed(tmp_path) -> None:
    spec = tmp_path / "fixed.yaml"
    spec.write_text(
        "archc: 1\nname: fixed\ninputs:\n  - {name: x, shape: [8, 6, 2]}\n"
        "layers:\n  - {op: conv2d, filters: 3, kernel: 3, strides: 2, padding: same}\n",
        encoding="utf-8",
    )
    report = verify(str(spec), odd_input=True)
    assert report.odd_input == {
        "skipped": "the spec's input shape is fixed (not a list[int] parameter)"
    }


def test_a_graph_input_may_also_be_an_output(tmp_path) -> None:
    spec = tmp_path / "io.yaml"
    spec.write_text(
        "archc: 1\nname: io\ninputs:\n  - {name: a, shape: [6, 5, 3]}\nlayers:\n"
        "  - {op: conv2d, name: c, filters: 3, kernel: 1}\n"
        "  - {op: add, name: s, inputs: [c, a]}\noutputs: [s, a]\n",
        encoding="utf-8",
    )
    # the conv (a module), and the two outputs: s, and the input a itself
    assert verify(str(spec)).layers_checked == 3


def test_inputs_computed_as_a_list_of_names() -> None:
    from pathlib import Path

    spec = Path(__file__).parent / "computed_inputs.yaml"
    compiled = compile_spec(spec)
    assert compiled.graph.node("both").inputs == ("a", "a")
    assert compiled.graph.node("both").shape == (5, 7, 4)
    verify(compiled)  # Keras == PyTorch, generated from the expression


def test_overflow_both_frameworks_share_is_agreement() -> None:
    # a network that squares its activations again and again overflows float32: the same
    # infinities (or NaNs) at the same places in both frameworks agree; the finite rest is
    # compared as ever, and an overflow in one framework only is a disagreement
    from archc.backends.proof.verify import _compare

    inf, nan = np.inf, np.nan
    a = np.array([1.0, inf, -inf, nan], np.float32)
    assert _compare(a, a.copy(), 1e-5)[0] == 0.0
    assert _compare(a, np.array([1.5, inf, -inf, nan], np.float32), 1e-5)[0] == 0.5
    for other in ([1.0, 3.0, -inf, nan], [1.0, -inf, -inf, nan], [1.0, inf, -inf, inf]):
        diff, limit = _compare(a, np.array(other, np.float32), 1e-5)
        assert diff == inf and limit == 0.0


def test_archc_runs_tensorflow_on_the_path_that_convolves_right() -> None:
    """TensorFlow's oneDNN CPU convolution returns garbage for a 1x2, stride-2 convolution
    over a width of 3 (tests/backends/strided_valid_conv.yaml: values up to 1e38 where the
    sum is ~1); archc verify, in a fresh process whose environment does not choose a path,
    runs on TensorFlow's Eigen path and agrees with PyTorch."""
    import os
    import subprocess
    import sys

    spec = Path(__file__).with_name("strided_valid_conv.yaml")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    cmd = [sys.executable, "-m", "archc", "verify", str(spec)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert "1 layers agree" in run.stdout
