"""`archc schema` describes what the compiler accepts.

The reference is the compiler itself: every spec it accepts (every committed spec, globbed,
every spec file and spec text in the tests that it compiles, specs drawn by the property
tests' generators) must validate against the schema with `jsonschema`; literal mistakes it
rejects at load time must fail the schema too; and attribute by attribute, every value an
op's attribute type accepts must be accepted by the schema.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import json
import math
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from pydantic import TypeAdapter, ValidationError

from archc.cli import cli
from archc.compiler.api import compile_spec
from archc.compiler.diagnostics import SpecError
from archc.compiler.load import validate
from archc.compiler.ops import field_types, load_all
from archc.compiler.schema import op_reference
from archc.compiler.yaml_loader import load_file, load_text
from tests.conftest import ROOT, SPECS

TESTS = ROOT / "tests"
BROKEN = TESTS / "compiler" / "broken"
# Codes of the mistakes the spec's structure check reports (compiler/load.py, names.py):
# the schema must reject every broken spec that expects one of them.
STRUCTURE_CODES = {"E010", "E011", "E012", "E013", "E014", "E015", "E024", "E025"}


@cache
def schema() -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["schema"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@cache
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


def problems(data: Any) -> list[str]:
    """The schema's complaints about a spec, most relevant first ('' when valid)."""
    out = []
    for err in sorted(validator().iter_errors(data), key=jsonschema.exceptions.relevance):
        best = jsonschema.exceptions.best_match([err])
        where = "/".join(map(str, best.absolute_path)) or "<top>"
        out.append(f"{where}: {best.message[:300]}")
    return out


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$schema"].endswith("/draft/2020-12/schema")


# -- what the compiler accepts, the schema accepts ---------------------------------------------
@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_spec_is_valid(path: Path) -> None:
    assert problems(load_file(path).data) == []


def _spec_files_in_tests() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.yaml") if BROKEN not in p.parents)


def _spec_texts_in_tests() -> list[tuple[str, str]]:
    """(file:line, text) of every string constant in the test modules that looks like a
    spec (op_cases.py's, the texts tests write to files, ...)."""
    out = []
    for module in sorted(TESTS.rglob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and re.search(r"^archc: 1$", text, re.M) and "layers:" in text:
                out.append((f"{module.relative_to(TESTS)}:{node.lineno}", text))
    return out


@pytest.mark.parametrize("path", _spec_files_in_tests(), ids=lambda p: str(p.relative_to(TESTS)))
def test_every_spec_file_in_the_tests_is_valid(path: Path) -> None:
    loaded = validate(load_file(path))
    compile_spec(loaded)  # they are examples of valid specs: the compiler says so first
    assert problems(loaded.doc.data) == []


def with_defaults(data: Any) -> Any:
    """The document with `defaults:` copied into the op items that lack them: defaults may give
    required attributes, which a JSON Schema (that cannot see them) asks of the item itself."""
    defaults = data.get("defaults") if isinstance(data, dict) else None
    if not isinstance(defaults, dict):
        return data

    def fill(items: Any) -> Any:
        if not isinstance(items, list):
            return items
        out = []
        for item in items:
            if isinstance(item, dict):
                given = defaults.get(item.get("op"))
                item = {**(given if isinstance(given, dict) else {}), **item}
                if "body" in item:
                    item["body"] = fill(item["body"])
            out.append(item)
        return out

    data = {**data, "layers": fill(data.get("layers"))}
    if isinstance(data.get("blocks"), dict):
        data["blocks"] = {
            k: {**b, "body": fill(b.get("body"))} if isinstance(b, dict) else b
            for k, b in data["blocks"].items()
        }
    return data


def test_every_spec_text_in_the_tests_that_compiles_is_valid() -> None:
    texts = _spec_texts_in_tests()
    compiled, failures = 0, []
    for where, text in texts:
        try:
            doc = load_text(text, where)
            compile_spec(validate(doc))
        except SpecError:
            continue  # an example of a mistake
        compiled += 1
        found = problems(with_defaults(doc.data))
        if found:
            failures.append(f"{where}: {found[0]}")
    assert failures == []
    # the collection works: op_cases.py alone holds more than one valid spec per op
    assert compiled > len(load_all())


def test_every_attribute_value_the_compiler_accepts_is_valid() -> None:
    """Attribute by attribute, a pool of values (plus every value an enum names): each one
    the op's attribute type accepts, the schema's property accepts too."""
    pool: list[Any] = [None, True, False, 0, 1, 2, 3, -1, 0.5, 1.5, -0.5, 1e-3, 7.25]
    pool += ["", "x", "valid", [], [1], [0, 0], [2, 3], [-1, 2], [1, 2, 3], [1, 2, 3, 4]]
    pool += [[[1, 2], [3, 4]], [[0, 0], [0, 0]], [1, [2, 3]], [[1, 2]], [[1, 2], [3, 4], [5, 6]]]
    pool += [[0.5], [0.5, 1.5, 2.5], [None], [1, None], [True], ["a"], {"a": 1}, [-2, -1]]
    defs = schema()["$defs"]
    enums = {v for s in _subschemas(schema()) for v in s.get("enum", []) if isinstance(v, str)}
    missed, checked = [], 0
    for op in op_reference():
        opdef = load_all()[op.name]
        model = next(
            d for d in defs.values() if d["properties"].get("op", {}).get("const") == op.name
        )
        hints = field_types(opdef.attrs)
        for attr in op.attributes:
            prop = jsonschema.Draft202012Validator(model["properties"][attr.name])
            for value in [*pool, *sorted(enums)]:
                try:
                    TypeAdapter(hints[attr.name]).validate_python(value)
                except ValidationError:
                    continue
                checked += 1
                if not prop.is_valid(value):
                    missed.append(f"{op.name}.{attr.name}: {value!r}")
    assert missed == []
    assert checked > 100


def _subschemas(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [s for x in node for s in _subschemas(x)]
    if isinstance(node, dict):
        return [node, *(s for x in node.values() for s in _subschemas(x))]
    return []


# -- computed values: an expression wherever the compiler evaluates one -----------------------
BASE = """\
archc: 1
name: net
params:
  k: {type: int, default: 3}
  same: {type: bool, default: true}
inputs:
  - {name: image, shape: [16, 15, 3]}
layers:
"""


@pytest.mark.parametrize(
    "item",
    [
        "{op: zero_pad2d, padding: 3}",
        "{op: zero_pad2d, padding: [1, 2]}",
        "{op: zero_pad2d, padding: [[1, 2], [0, 3]]}",
        "{op: zero_pad2d, padding: [1, [2, 0]]}",
        "{op: zero_pad2d, padding: ['${k}', [2, '${k - 1}']]}",
        "{op: cropping2d, cropping: 2}",
        "{op: conv2d, filters: '${k * 2}', kernel: ['${k}', 1]}",
        "{op: conv2d, filters: 4, kernel: 3, padding: \"${'same' if same else 'valid'}\"}",
        "{op: conv2d, filters: 4, kernel: '${[k, k]}', strides: '${(1, 2)}'}",
        "{op: conv2d, name: 'c${k}', filters: 4, kernel: 3, when: '${same}', trainable: false}",
        "{op: max_pool2d, pool: 2, strides: null}",
        "{op: batch_norm, epsilon: '${1e-3 * k}', momentum: 0.9}",
        "{op: dropout, rate: 0.5, noise_shape: [1, 1, '${in_shape[-1]}']}",
        "{op: reshape, target_shape: ['${prev_shape[0] * prev_shape[1]}', -1]}",
        "{op: normalization, mean: [0.5, 0.5, '${k / 10}'], variance: [1, 1, 1]}",
        "{repeat: '${k}', var: j, start: 1, body: [{op: conv2d, name: 'c${j}', filters: 3, "
        "kernel: 1}]}",
    ],
)
def test_values_the_compiler_accepts_are_valid(item: str) -> None:
    text = f"{BASE}  - {item}\n  - {{op: flatten}}\n"
    compile_spec(validate(load_text(text)))  # the reference: the compiler accepts it
    assert problems(load_text(text).data) == []


@pytest.mark.parametrize(
    "item",
    [
        "{op: zero_pad2d, padding: -1}",
        "{op: zero_pad2d, padding: [1, 2, 3]}",
        "{op: zero_pad2d, padding: [[1, 2, 3], [0, 0]]}",
        "{op: conv2d, filters: 0, kernel: 3}",
        "{op: conv2d, filters: 4, kernel: 3, padding: full}",
        "{op: conv2d, filters: 4, kernel: [3, 3, 3]}",
        "{op: conv2d, filters: 4, kernel: 3, strides: true}",
        "{op: conv2d, filters: 4, kernel: 3, use_bias: 1}",
        "{op: conv2d, filters: 4.5, kernel: 3}",
        "{op: conv2d, filters: 4, kernel: 3, kernel_l2: -0.1}",
        "{op: conv2d, filters: 4, kernel: 3, name: bn-1}",
        "{op: conv2d, filters: 4, kernel: 3, name: prev}",
        "{op: conv2d, filters: 4, kernel: 3, name: class}",
        "{op: conv2d, filters: 4, kernel: 3, name: __x}",
        "{op: conv2d, filters: 4, kernel: 3, name: 'naïve'}",
        "{op: dropout, rate: 1.0}",
        "{op: batch_norm, momentum: 1.5}",
        "{op: batch_norm, epsilon: 0}",
        "{op: reshape, target_shape: []}",
        "{op: dense, units: 4, when: 1}",
        "{op: dense, units: 4, trainable: 'no'}",
        "{op: dense, units: 4, bias: false}",
        "{op: dense}",
        "{op: desne, units: 4}",
        "{block: nothing, args: {}, units: 3}",
        "{repeat: 1.5, body: [{op: flatten}]}",
    ],
)
def test_literal_mistakes_the_compiler_rejects_are_invalid(item: str) -> None:
    text = f"{BASE}  - {item}\n  - {{op: flatten}}\n"
    with pytest.raises(SpecError):  # the reference: the compiler rejects it
        compile_spec(validate(load_text(text)))
    assert problems(load_text(text).data) != []


@pytest.mark.parametrize(
    ("where", "text", "valid"),
    [
        ("defaults", "defaults: {conv2d: {use_bias: false, kernel_l2: '${0.1}'}}", True),
        ("defaults", "defaults: {conv2d: {kernel: [3, '${k}']}, zero_pad2d: {padding: 2}}", True),
        ("defaults", "defaults: {conv2d: {use_bias: 0}}", False),
        ("defaults", "defaults: {conv_2d: {use_bias: false}}", False),
        ("defaults", "defaults: {input: {shape: [1]}}", False),
        ("param", "params: {w: {type: float, default: 2}}", True),
        ("param", "params: {w: {type: 'list[int]', default: [1, '${2}']}}", True),
        ("param", "params: {w: {type: str, default: 'a${1}', choices: [a1, b]}}", True),
        ("param", "params: {w: {type: int, default: wide}}", False),
        ("param", "params: {w: {type: str, default: a, min: 1}}", False),
        ("param", "params: {w: {type: int, default: 1, choices: [1, true]}}", False),
        ("param", "params: {w: {type: 'list[int]', default: [1], choices: [[1]]}}", False),
        ("input", "inputs: [{name: image, shape: ['${16}', 15, 3]}]", True),
        ("input", "inputs: [{name: 'my image', shape: [16, 15, 3]}]", False),
    ],
)
def test_keys_outside_layers_follow_the_compiler(where: str, text: str, valid: bool) -> None:
    lines = BASE.splitlines()
    key = text.split(":", 1)[0]
    if key == "params":  # replace the base's params (they are not used by the layers)
        lines = [line for line in lines if not line.startswith(("params:", "  k:", "  same:"))]
    if key == "inputs":
        lines = [line for line in lines if not line.startswith(("inputs:", "  - {name: image"))]
    # a conv2d, so that defaults for it are used (the compiler checks only those)
    layers = "\n  - {op: conv2d, filters: 2, kernel: 1}\n  - {op: flatten}\n"
    spec = "\n".join([*lines[:2], text, *lines[2:]]) + layers
    doc = load_text(spec)
    try:
        compile_spec(validate(doc))
        accepted = True
    except SpecError:
        accepted = False
    assert accepted == valid, f"the compiler {'accepts' if accepted else 'rejects'} {where}"
    assert (problems(doc.data) == []) == valid


@pytest.mark.parametrize(
    "path",
    sorted(
        p
        for p in BROKEN.glob("*.yaml")
        if STRUCTURE_CODES & set(re.findall(r"error\[(E\d+)\]", p.read_text(encoding="utf-8")))
    ),
    ids=lambda p: p.name,
)
def test_broken_specs_with_structure_mistakes_are_invalid(path: Path) -> None:
    assert problems(load_file(path).data) != []


# -- specs drawn by the property tests' generators ---------------------------------------------
CHEAP = settings(
    max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_structured_specs_are_valid() -> None:
    """Specs with blocks, repeats, conditions, ids and computed references everywhere."""
    from tests.backends.test_structured_property import structured_specs

    @CHEAP
    @given(structured_specs())
    def check(text: str) -> None:
        assert problems(load_text(text).data) == [], text

    check()


def test_random_flat_specs_are_valid() -> None:
    """Specs that draw every op and every attribute form."""
    pytest.importorskip("torch")  # the generator's module builds PyTorch models too
    from tests.backends.test_property import random_specs

    @CHEAP
    @given(random_specs(max_layers=10))
    def check(text: str) -> None:
        assert problems(load_text(text).data) == [], text

    check()


# -- descriptions -----------------------------------------------------------------------------
def _properties(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every (path, property schema) under any `properties` of the schema."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                out += [(f"{path}/{k}", v) for k, v in value.items()]
            out += _properties(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _properties(value, f"{path}/{i}")
    return out


def test_every_key_and_attribute_has_a_description() -> None:
    props = _properties(schema())
    # (ParamDecl's conditional rules refine keys described where they are declared)
    missing = [p for p, prop in props if "/allOf/" not in p and not prop.get("description")]
    assert missing == []
    attributes = [(op.name, a.name) for op in op_reference() for a in op.attributes]
    defs = schema()["$defs"]
    defaults = schema()["properties"]["defaults"]["properties"]
    for op, attr in attributes:
        item = next(d for d in defs.values() if d["properties"].get("op", {}).get("const") == op)
        for prop in (item["properties"][attr], defaults[op]["properties"][attr]):
            assert prop["description"], (op, attr)


def test_an_attribute_description_gives_its_type_and_default() -> None:
    defs = schema()["$defs"]
    conv = defs["Conv2DItem"]["properties"]
    assert conv["filters"]["description"] == "a positive integer; required"
    assert (
        conv["strides"]["description"] == "a positive integer, or [height, width]; default: [1, 1]"
    )
    assert conv["strides"]["default"] == [1, 1]
    bn = defs["BatchNormItem"]["properties"]
    assert bn["momentum"]["description"] == "a number (>= 0, <= 1); default: 0.99"
    pad = defs["ZeroPad2DItem"]["properties"]["padding"]["description"]
    assert pad.startswith("a non-negative integer (every side), [height, width]")
    assert defs["ZeroPad2DItem"]["description"].startswith("zero padding")
    # every op item says what the op is: its doc, its layer type and how many inputs it takes
    for op in op_reference():
        item = next(
            d for d in defs.values() if d["properties"].get("op", {}).get("const") == op.name
        )
        assert f"layer type {op.title}; inputs: " in item["description"]


def test_an_attribute_type_with_definitions_is_inlined() -> None:
    """An enum inside a union has its own `$defs` in pydantic's schema: the attribute's
    schema carries it in place (a reference would dangle in the spec's schema)."""

    class Mode(enum.Enum):
        FAST = "fast"
        SLOW = "slow"

    @dataclasses.dataclass(frozen=True)
    class Attrs:
        mode: Mode | None = Mode.FAST

    from archc.compiler.schema import _attribute, computed

    attr = _attribute(dataclasses.fields(Attrs)[0], Mode | None)
    assert attr.default == "fast" and not attr.required
    assert "$ref" not in json.dumps(attr.schema) and "$defs" not in attr.schema
    check = jsonschema.Draft202012Validator(computed(attr.schema))
    assert [check.is_valid(v) for v in ("fast", None, "${m}", "medium")] == [True] * 3 + [False]


def test_no_number_in_the_schema_is_infinite() -> None:
    # json.dumps would write Infinity, which is not JSON
    text = json.dumps(schema())
    assert "Infinity" not in text and "NaN" not in text
    assert all(
        math.isfinite(v) for s in _subschemas(schema()) for v in s.values() if isinstance(v, float)
    )


def test_a_spec_is_validated_without_the_models_of_ops_it_does_not_name() -> None:
    # one pydantic model per op is costly to build (most of `archc check`'s time once): a
    # spec's validator holds the item models of its own ops only, and the full format is
    # built for `archc schema` alone. Counted in a fresh interpreter, where nothing else
    # has built item models.
    import subprocess
    import sys

    code = (
        "from archc.compiler.load import loads\n"
        "from archc.compiler.schema import _ItemBase\n"
        "loads('archc: 1\\nname: m\\ninputs: [{name: x, shape: [3]}]\\n"
        "layers: [{op: dense, units: 2}, {repeat: 2, body: [{op: dense, units: 2}]}]\\n')\n"
        "print(sorted(c.__name__ for c in _ItemBase.__subclasses__() "
        "if c.__name__.endswith('Item')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["['DenseItem']"]
