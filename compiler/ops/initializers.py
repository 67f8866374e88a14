"""Initial values of weights: Keras' initializers by name or as a configured class.

An initializer attribute (`kernel_initializer`, `bias_initializer`, `depthwise_initializer`,
`pointwise_initializer`) takes a Keras name (`he_normal`) or a mapping with a `class` and that
class' arguments (`{class: VarianceScaling, scale: 2.0, mode: fan_out}`); what a mapping leaves
out is Keras' default. Every mistake is one error with the known words (a union of the forms
would report one per form). Initializers change no shape and no count; each backend draws
with them (PyTorch as Keras does: docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from ..diagnostics import did_you_mean, short_repr

# Keras' names (keras.initializers.get): the VarianceScaling family, then the plain ones
NAMES = (
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "zeros",
    "ones",
    "random_normal",
    "random_uniform",
    "truncated_normal",
)
MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")


@dataclass(frozen=True, slots=True)
class VarianceScaling:
    """Variance scale / n, n the kernel's fan_in, fan_out or their mean (Keras' fans)."""

    scale: float = field(default=1.0, metadata={"rule": "positive"})
    mode: str = field(default="fan_in", metadata={"choices": MODES})
    distribution: str = field(default="truncated_normal", metadata={"choices": DISTRIBUTIONS})


@dataclass(frozen=True, slots=True)
class Constant:
    value: float = 0.0


@dataclass(frozen=True, slots=True)
class RandomNormal:
    mean: float = 0.0
    stddev: float = field(default=0.05, metadata={"rule": "positive"})


@dataclass(frozen=True, slots=True)
class TruncatedNormal:
    """A normal of `stddev`, values beyond two standard deviations drawn again (Keras')."""

    mean: float = 0.0
    stddev: float = field(default=0.05, metadata={"rule": "positive"})


@dataclass(frozen=True, slots=True)
class RandomUniform:
    minval: float = -0.05
    maxval: float = 0.05


CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (VarianceScaling, Constant, RandomNormal, TruncatedNormal, RandomUniform)
}
Config = VarianceScaling | Constant | RandomNormal | TruncatedNormal | RandomUniform
WORDS = (
    "a Keras initializer name (he_normal, ...) or {class: VarianceScaling | Constant | "
    "RandomNormal | TruncatedNormal | RandomUniform, ...its arguments}"
)


def _fail(message: str, hint: str = "") -> PydanticCustomError:
    return PydanticCustomError("initializer", f"{message}; {hint}" if hint else message)


def _number(cls: str, key: str, value: Any, rule: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        hint = " (expressions are not evaluated inside a mapping)" if isinstance(value, str) else ""
        raise _fail(f"{key} of {cls} should be a finite number, got {short_repr(value)}{hint}")
    if rule == "positive" and value <= 0:
        raise _fail(f"{key} of {cls} should be > 0, got {short_repr(value)}")
    return float(value)


def _choice(cls: str, key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        close = did_you_mean(value, choices) if isinstance(value, str) else ""
        words = ", ".join(choices)
        raise _fail(f"{key} of {cls} should be one of {words}, got {short_repr(value)}", close)
    return str(value)


def check_config(value: dict[Any, Any]) -> Config:
    name = value.get("class")
    if name not in CLASSES:
        close = did_you_mean(name, CLASSES) if isinstance(name, str) else ""
        what = "a mapping needs a 'class'" if name is None else f"unknown class {short_repr(name)}"
        raise _fail(f"{what}: one of {', '.join(CLASSES)}", close)
    cls = CLASSES[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    args: dict[str, Any] = {}
    for key, given in value.items():
        if key == "class":
            continue
        if key not in fields:
            close = did_you_mean(str(key), fields)
            known = ", ".join(fields)
            raise _fail(f"unknown argument {short_repr(key)} of {name} ({known})", close)
        meta = fields[key].metadata
        if "choices" in meta:
            args[key] = _choice(name, key, given, meta["choices"])
        else:
            args[key] = _number(name, key, given, meta.get("rule", ""))
    config: Config = cls(**args)
    if isinstance(config, RandomUniform) and not config.minval < config.maxval:
        raise _fail(f"minval {config.minval} of RandomUniform should be < maxval {config.maxval}")
    return config


def _initializer(value: Any) -> str | Config:
    if isinstance(value, Config):  # already validated (a dataclass replaced)
        return value
    if isinstance(value, str):
        if value in NAMES:
            return value
        close = did_you_mean(value, NAMES)
        names = "names: " + ", ".join(NAMES)
        raise _fail(f"unknown initializer {short_repr(value)}", close or names)
    if isinstance(value, dict):
        return check_config(value)
    raise _fail("input should be an initializer's name or a mapping with a 'class'")


ARGUMENT_WORDS = {
    "scale": "the variance is scale / n",
    "mode": "n: the kernel's fan_in, fan_out or their mean (Keras' fans)",
    "distribution": "truncated_normal (cut at 2 standard deviations, variance kept), "
    "untruncated_normal or uniform",
    "value": "every value",
    "mean": "the normal's mean",
    "stddev": "the normal's standard deviation (before the cut, for TruncatedNormal)",
    "minval": "the lowest value",
    "maxval": "the highest value (exclusive)",
}


def _schema() -> dict[str, Any]:
    number: dict[str, Any] = {"type": "number"}
    configs = []
    for name, cls in CLASSES.items():
        props: dict[str, Any] = {"class": {"const": name, "description": "Keras' class"}}
        for f in dataclasses.fields(cls):
            prop: dict[str, Any] = dict(number)
            if "choices" in f.metadata:
                prop = {"enum": list(f.metadata["choices"])}
            elif f.metadata.get("rule") == "positive":
                prop = {**number, "exclusiveMinimum": 0}
            props[f.name] = {**prop, "default": f.default, "description": ARGUMENT_WORDS[f.name]}
        configs.append(
            {
                "type": "object",
                "properties": props,
                "required": ["class"],
                "additionalProperties": False,
            }
        )
    return {"anyOf": [{"enum": list(NAMES)}, *configs], "description": WORDS}


Initializer = Annotated[
    str | Config,
    PlainValidator(_initializer),
    WithJsonSchema(_schema()),
    Field(description=WORDS),
]


KERNEL_DOC = "initial values of the kernel"
BIAS_DOC = "initial values of the bias"
DEPTHWISE_DOC = "initial values of the depthwise kernel"
POINTWISE_DOC = "initial values of the pointwise kernel"
