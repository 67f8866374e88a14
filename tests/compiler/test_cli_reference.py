"""The command line as its own reference: `archc ops` (every op, its attributes and docs) and
`--help` texts that are shown whole.

Expected values come from the op registry's attribute dataclasses (fields and defaults) and
from the click commands' own docstrings and option texts, not from the code that prints them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from archc.cli import cli
from archc.compiler.ops import load_all
from tests.conftest import ROOT


def run(*args: str, width: int | None = None) -> Any:
    extra = {} if width is None else {"terminal_width": width}
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, **extra)


def ops() -> dict[str, Any]:
    return {name: op for name, op in load_all().items() if name != "input"}


def spelled(value: Any) -> str:
    """A default as a spec writes it: tuples as lists, None as null, strings quoted."""
    plain = json.loads(json.dumps(value))  # tuples become lists
    return json.dumps(plain)


def sections(text: str) -> dict[str, str]:
    """`archc ops` output split at the unindented heading of each op."""
    out: dict[str, str] = {}
    for block in re.split(r"\n(?=\S)", text.strip()):
        name = re.match(r"[a-z0-9_]+", block)
        assert name is not None, block
        out[name.group(0)] = block
    return out


# -- archc ops ---------------------------------------------------------------------------------
def test_ops_lists_every_op_with_every_attribute_and_its_default() -> None:
    result = run("ops")
    assert result.exit_code == 0, result.output
    found = sections(result.stdout)
    assert sorted(found) == sorted(ops())
    for name, op in ops().items():
        text = " ".join(found[name].split())
        if op.doc:
            assert " ".join(f"{name}: {op.doc}".split()) in text
        assert f"layer type {op.title}; inputs: " in text
        fields = [f for f in dataclasses.fields(op.attrs) if f.name not in op.computed]
        if not fields:
            assert "no attributes" in text
        for f in fields:
            required = f.default is dataclasses.MISSING
            given = "required" if required else f"default {spelled(f.default)}"
            assert re.search(rf"(^|\s){f.name}\s+{re.escape(given)}\s", found[name] + " ", re.M), (
                name,
                f.name,
                given,
            )


def test_ops_name_shows_one_op_in_detail() -> None:
    result = run("ops", "conv2d")
    assert result.exit_code == 0
    text = result.stdout
    assert text.startswith("conv2d: 2-D convolution; kernel (kh, kw, in/groups, filters)\n")
    assert "layer type Conv2D; inputs: 1" in text
    assert re.search(r"^\s+filters\s+required\s+a positive integer$", text, re.M)
    assert re.search(
        r"^\s+kernel\s+required\s+a positive integer, or \[height, width\]$", text, re.M
    )
    assert re.search(r"^\s+strides\s+default \[1, 1\]\s+a positive integer", text, re.M)
    assert re.search(
        r"^\s+kernel_l2\s+default null\s+a non-negative number \(or null\)$", text, re.M
    )
    assert "pads" not in text  # computed by the compiler, not written in specs
    assert "every op item also takes:" in text
    for key in ("name", "inputs", "when", "id", "trainable"):
        assert re.search(rf"^\s+{key}\s+\S", text, re.M), key


@pytest.mark.parametrize(
    ("name", "inputs"), [("add", "2 or more"), ("subtract", "2"), ("dense", "1")]
)
def test_ops_says_how_many_inputs_an_op_takes(name: str, inputs: str) -> None:
    assert f"inputs: {inputs}\n" in run("ops", name).stdout


def test_ops_of_an_unknown_op_is_a_usage_error_with_a_suggestion() -> None:
    result = run("ops", "conv")
    assert result.exit_code == 2
    assert "unknown op 'conv'; did you mean 'conv2d'?" in result.output


def test_ops_json_gives_every_attribute_with_its_schema() -> None:
    result = run("ops", "--json")
    assert result.exit_code == 0
    listed = {op["name"]: op for op in json.loads(result.stdout)["ops"]}
    assert sorted(listed) == sorted(ops())
    for name, op in ops().items():
        entry = listed[name]
        assert entry["layer_type"] == op.title
        assert entry["doc"] == op.doc
        assert entry["inputs"] == {"min": op.min_inputs, "max": op.max_inputs}
        fields = [f for f in dataclasses.fields(op.attrs) if f.name not in op.computed]
        assert [a["name"] for a in entry["attributes"]] == [f.name for f in fields]
        for a, f in zip(entry["attributes"], fields, strict=True):
            assert a["required"] == (f.default is dataclasses.MISSING)
            if not a["required"]:
                assert json.dumps(a["default"]) == spelled(f.default)
            assert a["type"]
            jsonschema.Draft202012Validator.check_schema(a["schema"])
    pad = {a["name"]: a for a in listed["zero_pad2d"]["attributes"]}["padding"]["schema"]
    for value, ok in [(3, True), ([1, 2], True), ([[1, 2], [0, 3]], True), (-1, False)]:
        assert jsonschema.Draft202012Validator(pad).is_valid(value) == ok, value


def test_ops_json_of_one_op() -> None:
    entry = json.loads(run("ops", "dense", "--json").stdout)
    assert entry["name"] == "dense"
    assert [a["name"] for a in entry["attributes"]] == [
        "units",
        "use_bias",
        "activation",
        "kernel_l2",
        "kernel_initializer",
        "bias_initializer",
    ]


def test_ops_imports_no_framework() -> None:
    code = (
        "import sys\n"
        "from archc.cli import main\n"
        "try:\n    main(['ops'])\n"
        "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'torch', 'jax', 'numpy'))\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "HEAVY []" in out.stdout


# -- --help ------------------------------------------------------------------------------------
def squeezed(text: str) -> str:
    """Text without whitespace: help is re-wrapped (and split at hyphens) to the terminal."""
    return "".join(text.split())


COMMANDS = sorted(cli.commands)


@pytest.mark.parametrize("width", [80, 60])
@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_shows_its_whole_text(name: str, width: int) -> None:
    command = cli.commands[name]
    result = run(name, "--help", width=width)
    assert result.exit_code == 0
    shown = squeezed(result.stdout)
    assert command.help and squeezed(command.help) in shown
    assert "\f" not in command.help  # click shows nothing after a form feed
    for param in command.params:
        if getattr(param, "help", None) is None and param.name != "help":
            assert param.param_type_name == "argument", f"{name} {param.name}: no help text"
        if getattr(param, "help", None):
            assert squeezed(param.help) in shown, (name, param.name)


@pytest.mark.parametrize("width", [80, 60])
def test_the_command_list_shows_each_first_sentence_whole(width: int) -> None:
    result = run("--help", width=width)
    assert result.exit_code == 0
    listing = result.stdout.split("\nCommands:\n", 1)[1]
    assert "..." not in listing  # click's mark of a cut sentence
    shown = squeezed(result.stdout)
    for name in COMMANDS:
        first = re.split(r"(?<=\.)\s+(?=[A-Z])", " ".join(cli.commands[name].help.split()))[0]
        assert squeezed(f"{name}{first}") in shown, name
