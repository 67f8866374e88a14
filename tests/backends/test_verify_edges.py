"""verify never passes on NaN: neither a NaN output nor a NaN tolerance."""

from __future__ import annotations

import numpy as np
import pytest

from backends.verify import _compare, verify
from tests.conftest import SEED


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_difference_never_passes(bad: float) -> None:
    diff, limit = _compare(np.array([1.0, bad]), np.array([1.0, 0.0]), atol=1e-5)
    assert not diff <= limit


def test_shapes_that_differ_never_pass() -> None:
    diff, limit = _compare(np.zeros((2, 3)), np.zeros((3, 2)), atol=1.0)
    assert not diff <= limit


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
