"""`archc check` walks the spec as every backend renders it (no framework imported), so a spec
that a backend cannot generate is refused by check, at its location, never first by compile; and
rendering gives the same source whatever torch is installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from archc.backends.torch.render import _MODULE_ATTRS

STRUCTURED = Path(__file__).parent / "structured"


def test_check_reports_a_backend_refusal_at_its_location(archc: Any, monkeypatch: Any) -> None:
    # no spec the compiler accepts is refused by the PyTorch backend alone today, so the
    # refusal is simulated: a backend's located error reaches check's output unchanged
    from archc.backends.torch import render as torch_render

    def refuse(self: Any, step: Any, outer: Any) -> Any:
        raise torch_render._error(self.s, step, "cannot generate this repeat", "a hint")

    monkeypatch.setattr(torch_render._Renderer, "body_class", refuse)
    spec = STRUCTURED / "outer_id_in_repeat.yaml"
    result = archc("check", spec)
    assert result.exit_code == 1
    lines = spec.read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.strip().startswith("- repeat:"))
    where = f"outer_id_in_repeat.yaml:{line}:5"  # the repeat item's mapping, at column 5
    assert f"{where}: error[E120]: torch backend: cannot generate this repeat" in result.stderr
    assert "a hint" in result.stderr


def test_check_accepts_a_repeat_body_reading_ids_and_the_input_from_around_it(
    archc: Any,
) -> None:
    for name in ("outer_id_in_repeat", "input_in_top_repeat", "id_set_again_in_repeat"):
        result = archc("check", STRUCTURED / f"{name}.yaml")
        assert result.exit_code == 0, result.stderr


def test_check_refuses_a_reference_no_backend_can_generate(archc: Any, tmp_path: Path) -> None:
    spec = tmp_path / "text_ref.yaml"
    spec.write_text(
        "archc: 1\nname: text_ref\ninputs:\n  - {name: img, shape: [4, 4, 2]}\n"
        "layers:\n  - {op: conv2d, name: c1, filters: 2, kernel: 1}\n"
        "  - repeat: 1\n    body:\n"
        "      - {op: add, name: 'a${i}', inputs: [prev, 'c${i + 1}']}\n",
        encoding="utf-8",
    )
    result = archc("check", spec)
    assert result.exit_code == 1
    assert "text_ref.yaml:9:" in result.stderr and "error[E120]" in result.stderr


def test_module_attribute_names_cover_the_installed_torch() -> None:
    # spec names that would shadow nn.Module's own attributes are renamed: the list is kept
    # in the source (rendering imports no torch), so it must cover the torch in use. Read in a
    # fresh interpreter: other libraries patch nn.Module when they are used (transformers adds
    # `smart_apply` while it initialises a model), and which ran first in this worker varies.
    probe = "import json; from torch import nn; "
    probe += "print(json.dumps(sorted(set(dir(nn.Module)) | set(vars(nn.Module())))))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    installed = set(json.loads(out.stdout))
    assert installed <= _MODULE_ATTRS, sorted(installed - _MODULE_ATTRS)


def test_check_generation_does_not_lay_out_the_source(monkeypatch: Any) -> None:
    # check needs only what a backend refuses, not its source: the formatter (a ruff
    # subprocess per backend) does not run; compile still formats (test_generated_code)
    from archc.backends import writer
    from archc.backends.compile import check_generation
    from archc.compiler.api import compile_spec

    def formatter(*args: Any) -> str:
        raise AssertionError("the formatter ran")

    monkeypatch.setattr(writer, "_ruff", formatter)
    check_generation(compile_spec(str(STRUCTURED / "outer_id_in_repeat.yaml")))


def test_check_generation_walks_without_templating(monkeypatch: Any) -> None:
    # check needs what a backend refuses, which its walk of the spec raises: no template is
    # rendered, no helper's source gathered, no helper's body walked for the names it reads
    from archc.backends import helper_library
    from archc.backends.compile import check_generation
    from archc.backends.keras import backend as keras_backend
    from archc.backends.torch import render as torch_render
    from archc.compiler.api import compile_spec

    def forbidden(*args: Any) -> Any:
        raise AssertionError("check rendered more than the refusals")

    for module in (keras_backend, torch_render):
        monkeypatch.setattr(module, "environment", forbidden)
        monkeypatch.setattr(module, "helper_source", forbidden)
    monkeypatch.setattr(helper_library, "_reads", forbidden)
    helper_library.read_module.cache_clear()
    helper_library.library.cache_clear()
    helper_library._names.cache_clear()
    try:
        for name in ("outer_id_in_repeat", "input_in_top_repeat", "id_set_again_in_repeat"):
            check_generation(compile_spec(str(STRUCTURED / f"{name}.yaml")))
    finally:  # helpers read under the patch hold no walk yet: read them again for others
        helper_library.read_module.cache_clear()
        helper_library.library.cache_clear()
        helper_library._names.cache_clear()


def test_a_refusal_is_raised_by_check_as_by_compile(monkeypatch: Any) -> None:
    # the renderers stop before their templates only under check: the same walk refuses the
    # same spec when compile renders it
    from archc.backends.compile import check_generation
    from archc.backends.torch import render as torch_render
    from archc.compiler.api import compile_spec
    from archc.compiler.diagnostics import SpecError

    def refuse(self: Any, step: Any, outer: Any) -> Any:
        raise torch_render._error(self.s, step, "cannot generate this repeat", "a hint")

    monkeypatch.setattr(torch_render._Renderer, "body_class", refuse)
    compiled = compile_spec(str(STRUCTURED / "outer_id_in_repeat.yaml"))
    messages = []
    for run in (lambda: check_generation(compiled), lambda: torch_render.render(compiled)):
        with pytest.raises(SpecError) as caught:
            run()
        messages.append([d.format() for d in caught.value.diagnostics])
    assert messages[0] == messages[1] and "cannot generate this repeat" in messages[0][0]
