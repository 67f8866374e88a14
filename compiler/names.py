"""Names in a spec: which layer names are usable, and checks that need no parameter values."""

from __future__ import annotations

import keyword
import re
from typing import Any

from .diagnostics import Diagnostic, did_you_mean
from .expr import CONSTANTS
from .load import LoadedSpec
from .ops import load_all
from .schema import RESERVED_REFS

SHAPE_NAMES = ("in_shape", "prev_shape")  # bound in expressions to the current shapes
CONSTANT_HINT = "true and false are constants in expressions; choose another name"


def constant_name(name: str) -> str | None:
    """Why a name a spec binds in expressions (a parameter, a block argument, a loop
    variable) cannot be `name`, when it is one of the expression constants."""
    if name in CONSTANTS:
        return f"is reserved: expressions read '{name}' as the constant {name}"
    return None


def keras_name(layer_class: str) -> str:
    """The name Keras gives the first unnamed layer of a class (later ones: `_1`, `_2`): its
    snake-case name, as Keras writes it (keras.src.utils.naming.to_snake_case; a test holds
    the two equal over every op's layer class)."""
    name = re.sub(r"\W+", "", layer_class)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_name(name: Any) -> str | None:
    """Why a layer name is unusable, or None when it is fine."""
    # ASCII only: Python folds other identifiers (NFKC), so two names could become one.
    if not isinstance(name, str) or not _NAME.fullmatch(name) or keyword.iskeyword(name):
        return "must be an ASCII identifier (letters, digits, underscores; not a Python keyword)"
    if name in RESERVED_REFS:
        return f"'{name}' is reserved for references (prev, input)"
    if name.startswith("__"):
        return "names starting with '__' are reserved"
    return None


def check_static(loaded: LoadedSpec) -> list[Diagnostic]:
    """Checks that need no parameter values: names of parameters and arguments, and that
    per-op defaults name real ops and real attributes."""
    ops = load_all()
    out = []
    declared = [(("params", p), p) for p in loaded.spec.params] + [
        (("blocks", b, "args", a), a) for b, block in loaded.spec.blocks.items() for a in block.args
    ]
    for path, name in declared:
        why, hint = "", ""
        if not _NAME.fullmatch(name) or keyword.iskeyword(name):
            why = "is not a valid name (use letters, digits and underscores)"
        elif name in SHAPE_NAMES:
            why = "is reserved: expressions use it for the current input's shape"
        elif reason := constant_name(name):
            why, hint = reason, CONSTANT_HINT
        if why:
            loc = loaded.doc.loc(path, key=True)
            out.append(Diagnostic("E026", f"'{name}' {why}", loc, hint=hint))
    for op, attrs in loaded.spec.defaults.items():
        if op not in ops or op == "input":
            out.append(
                Diagnostic(
                    "E024",
                    f"defaults for unknown op '{op}'",
                    loaded.doc.loc(("defaults", op), key=True),
                    hint=did_you_mean(op, ops) or "ops: " + ", ".join(sorted(ops)),
                )
            )
            continue
        fields = [f.name for f in ops[op].user_fields]
        for key in attrs:
            if key not in fields:
                out.append(
                    Diagnostic(
                        "E025",
                        f"defaults: '{op}' has no attribute '{key}'",
                        loaded.doc.loc(("defaults", op, key), key=True),
                        hint=did_you_mean(key, fields) or "attributes: " + ", ".join(fields),
                    )
                )
    return out
