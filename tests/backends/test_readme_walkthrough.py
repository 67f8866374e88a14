"""README's "Your first spec" is true: its specs, commands, shown outputs and Python snippets,
run in order in an empty folder.

- a ```yaml block becomes `first.yaml` (the compiler must accept it, and the schema that the
  walk-through writes must too, as an editor would check it);
- a ```bash block's lines are archc commands (`> FILE` writes the output to FILE), exit 0;
- a ```text block is `$ command` lines, each followed by what it prints: every shown line must
  be in the output (`...` stands for lines left out; a line's columns, split at two or more
  spaces, must appear in that order in one output line, so that an added column does not
  break the README); a command that shows `error[` must exit 1;
- the ```python blocks run, in one fresh interpreter, in that folder (they import the
  generated files from `generated/`).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from archc.cli import cli
from archc.compiler.api import compile_spec
from archc.compiler.load import validate
from archc.compiler.yaml_loader import load_file
from tests.conftest import ROOT

pytest.importorskip("torch")
pytest.importorskip("keras")


def section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Your first spec\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def blocks() -> list[tuple[str, str]]:
    return re.findall(r"^```(\w+)\n(.*?)^```$", section(), re.S | re.M)


def archc(command: str) -> tuple[int, str]:
    """Run one archc command line in-process; `> FILE` writes its standard output to FILE."""
    words = shlex.split(command)
    target = None
    if ">" in words:
        at = words.index(">")
        words, target = words[:at], words[at + 1]
    assert words[0] == "archc", command
    result = CliRunner().invoke(cli, words[1:], catch_exceptions=False)
    if target is not None:
        Path(target).write_text(result.stdout, encoding="utf-8")
    return result.exit_code, result.output


def shown_in(line: str, output: str) -> bool:
    cells = re.split(r"\s{2,}", line.strip())
    for out in output.splitlines():
        at = 0
        for cell in cells:
            at = out.find(cell, at)
            if at < 0:
                break
            at += len(cell)
        else:
            return True
    return False


def run_text_block(text: str) -> int:
    """`$ command` lines and what each prints; returns how many commands ran."""
    runs = re.split(r"^\$ ", text, flags=re.M)[1:]
    for run in runs:
        command, *shown = run.rstrip("\n").split("\n")
        if "typo.yaml" in command:  # the prose: "the same file with `filter: 16`"
            spec = Path("first.yaml").read_text(encoding="utf-8")
            assert "filters: 16" in spec
            Path("typo.yaml").write_text(spec.replace("filters: 16", "filter: 16", 1))
        code, output = archc(command)
        want = 1 if any("error[" in line for line in shown) else 0
        assert code == want, f"{command}: exit {code}\n{output}"
        for line in shown:
            if line.strip() and line.strip() != "...":
                assert shown_in(line, output), f"{command}: not shown: {line!r}\n{output}"
    return len(runs)


def test_the_walkthrough_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    found = blocks()
    kinds = [kind for kind, _ in found]
    assert kinds.count("yaml") >= 2 and "python" in kinds and "bash" in kinds, kinds
    commands, specs, snippets = 0, 0, []
    for kind, text in found:
        if kind == "yaml":
            Path("first.yaml").write_text(text, encoding="utf-8")
            doc = load_file("first.yaml")
            compile_spec(validate(doc))
            modeline = re.match(r"# yaml-language-server: \$schema=(\S+)\n", text)
            if modeline:  # the schema the walk-through wrote, as the editor reads it
                schema = json.loads(Path(modeline.group(1)).read_text(encoding="utf-8"))
                errors = list(jsonschema.Draft202012Validator(schema).iter_errors(doc.data))
                assert errors == [], [e.message for e in errors]
            specs += 1
        elif kind == "bash":
            for line in text.splitlines():
                command = line.split("  #")[0].strip()
                if command:
                    code, output = archc(command)
                    assert code == 0, f"{command}: exit {code}\n{output}"
                    commands += 1
        elif kind == "text":
            commands += run_text_block(text)
        elif kind == "python":
            snippets.append(text)
    # the files the commands wrote, where the README says
    assert Path("archc.schema.json").is_file()
    for backend in ("torch", "keras"):
        assert Path(f"generated/first_{backend}.py").is_file()
    script = "\n".join(snippets)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert specs >= 2 and commands >= 6 and len(snippets) >= 2
