"""Running out of memory is the machine's limit, not a bug in archc: whichever library runs
out (Python, PyTorch, TensorFlow), the CLI says so plainly and exits 1, never 3."""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import pytest

from tests.compiler.test_errors import archc_command
from tests.conftest import SEED


def _framework_error(module: str, name: str, base: type[Exception]) -> type[Exception]:
    """An exception class as a framework defines it, without importing the framework."""
    return type(name, (base,), {"__module__": module})


TorchOOM = _framework_error("torch", "OutOfMemoryError", RuntimeError)
OpError = _framework_error("tensorflow.python.framework.errors_impl", "OpError", Exception)
ResourceExhausted = _framework_error(
    "tensorflow.python.framework.errors_impl", "ResourceExhaustedError", OpError
)

KINDS = {
    "python": lambda: MemoryError(),
    "torch-cpu-allocator": lambda: RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
        "memory: you tried to allocate 400000000000 bytes. Error code 12 (Cannot allocate memory)"
    ),
    "torch-oom": lambda: TorchOOM("CUDA out of memory. Tried to allocate 372.53 GiB"),
    "tensorflow": lambda: ResourceExhausted(
        "OOM when allocating tensor with shape[100000,1000000] and type float"
    ),
}


def _wrapped(exc: BaseException) -> BaseException:
    """A framework error re-raised by library code as another exception."""
    try:
        try:
            raise exc
        except BaseException as inner:
            raise ValueError("Exception encountered when calling Dense.call()") from inner
    except ValueError as outer:
        return outer


@pytest.mark.parametrize("wrap", [False, True])
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("command", ["check", "compile", "verify"])
def test_out_of_memory_is_exit_1_with_a_clear_message(
    archc, monkeypatch: pytest.MonkeyPatch, kind: str, command: str, wrap: bool
) -> None:
    import importlib

    def exhausted(*args: object, **kwargs: object) -> None:
        exc = KINDS[kind]()
        raise _wrapped(exc) if wrap else exc

    # where each command looks compile_spec up (the backends imported it by name)
    where = {
        "check": "archc.compiler.api",
        "compile": "archc.backends.compile",
        "verify": "archc.backends.proof.verify",
    }
    monkeypatch.setattr(importlib.import_module(where[command]), "compile_spec", exhausted)
    args = {"check": [], "compile": ["--backend", "torch", "--check"], "verify": []}[command]
    result = archc(command, SEED, *args)
    assert result.exit_code == 1, result.output
    assert "error: out of memory building or running the model" in result.stderr
    assert "bug in archc" not in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("kaput"),
        ValueError("out of memory"),  # archc's own code says no such thing: still a bug
        _framework_error("torch", "OutOfRangeError", RuntimeError)("index"),
    ],
)
def test_other_errors_are_still_bugs(archc, monkeypatch: pytest.MonkeyPatch, exc: Exception):
    from archc.compiler import api as compiler_api

    def boom(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(compiler_api, "compile_spec", boom)
    result = archc("check", SEED)
    assert result.exit_code == 3
    assert "This is a bug in archc" in result.stderr


HUGE = """archc: 1
name: huge
inputs:
  - {name: image, shape: [100, 100, 10]}
layers:
  - {op: flatten, name: flat}
  - {op: dense, name: fc, units: 1000000}
"""
LIMIT = 6_000_000 * 1024  # `ulimit -v 6000000`: far less than the dense layer's 400 GB


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_a_model_too_large_for_memory_is_exit_1(tmp_path: Path, backend: str) -> None:
    # with the memory pre-check off (ARCHC_MEMORY_CHECK=off: its estimate is an upper bound,
    # a user may try anyway), the allocation itself fails: still exit 1, never 3
    spec = tmp_path / "huge.yaml"
    spec.write_text(HUGE, encoding="utf-8")
    proc = subprocess.run(
        [*archc_command(), "compile", spec, "--backend", backend, "-o", tmp_path / "out"],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_limit_memory,
        env={**os.environ, "ARCHC_MEMORY_CHECK": "off"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "error: out of memory building or running the model" in proc.stderr
    assert "bug in archc" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / f"huge_{backend}.py").exists()
