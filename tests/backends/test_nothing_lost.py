"""An existing generated file survives interruption: writes are temp file + fsync + rename."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archc.backends import codegen
from archc.backends.compile import compile_to_file
from tests.conftest import SEED


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_interrupted_write_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    target = tmp_path / "model.py"
    target.write_text("old contents\n", encoding="utf-8")

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(codegen.os, where, interrupt)
    with pytest.raises(KeyboardInterrupt):
        codegen.write_atomic(target, "new contents\n")
    assert target.read_text(encoding="utf-8") == "old contents\n"
    assert [p.name for p in tmp_path.iterdir()] == ["model.py"]


def test_interrupted_compile_keeps_the_generated_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "generated"
    first = compile_to_file(SEED, "torch", out, verify=False).path
    before = first.read_bytes()
    first.write_bytes(before + b"# local edit\n")  # so that a rewrite would be visible
    edited = first.read_bytes()

    real_replace = os.replace

    def interrupt(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(codegen.os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        compile_to_file(SEED, "torch", out, verify=False)
    assert first.read_bytes() == edited
    assert sorted(p.name for p in out.iterdir()) == [first.name]

    monkeypatch.setattr(codegen.os, "replace", real_replace)
    compile_to_file(SEED, "torch", out, verify=False)
    assert first.read_bytes() == before
