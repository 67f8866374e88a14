"""Every spec in specs/, verified with its Keras model on another Keras backend.

Run as a script in a fresh process (Keras' backend is fixed at its first import):
    python -m tests.backends.keras_backend_cases jax [SPEC_STEM ...]
prints one JSON line per spec: the spec, the Keras backend that ran, the layers compared and
max|Δ|, or the error's text.

The ImageNet-sized networks run at a small input size and narrower or shallower stages (same
ops, same block structure, fewer repeats; ResNet50's first stage keeps an identity block): the
default sizes cost minutes each on two CPU cores and prove nothing more about the Keras
backend. On JAX most of the time is XLA compiling Keras' initializers, one program per weight
shape, so fewer distinct shapes is what makes a case cheap.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.conftest import SPECS

# spec stem -> (variant, parameter overrides, input sizes for unknown height/width)
CASES: dict[str, tuple[str | None, dict[str, Any], list[tuple[int, int]]]] = {
    "bert": (None, {}, []),
    "convnext": (
        None,
        {
            "input_shape": [32, 32, 3],
            "classes": 10,
            "depths": [1, 1, 2, 1],
            "projection_dims": [8, 16, 24, 32],
        },
        [],
    ),
    "densenet121": (
        None,
        {"input_shape": [32, 32, 3], "classes": 10, "blocks": [1, 2, 2, 1], "growth_rate": 8},
        [],
    ),
    "efficientnet": (
        None,
        {
            "resolution": 32,
            "classes": 10,
            "repeats": [1, 1, 1, 1, 1, 1, 1],
            "filters": [8, 8, 16, 16, 24, 24, 32],
        },
        [],
    ),
    "efficientnet_v2": (
        None,
        {
            "resolution": 32,
            "classes": 10,
            "repeats": [1, 1, 1, 1, 1, 1],
            "filters": [8, 8, 16, 16, 24, 24],
            "stem_filters": 8,
        },
        [],
    ),
    "gpt": (None, {"depth": 2}, []),
    "inception_resnet_v2": (
        None,
        {"input_shape": [75, 75, 3], "classes": 10, "repeats": [1, 1, 1]},
        [],
    ),
    "llama": (None, {}, []),
    "lstm": ("small", {}, []),
    "mobilenet": ("alpha_0.25", {"input_shape": [32, 32, 3], "classes": 10}, []),
    "mobilenet_v2": ("alpha_0.5", {"input_shape": [32, 32, 3], "classes": 10}, []),
    "mobilenet_v3": (
        "small_0.75",
        {  # four blocks: expansion 1 with SE, without SE, with SE, a residual one
            "input_shape": [32, 32, 3],
            "classes": 10,
            "expansions": [1, 4.5, 4, 6],
            "filters": [16, 24, 40, 40],
            "kernels": [3, 3, 5, 5],
            "strides": [2, 2, 2, 1],
            "se": [1, 0, 1, 1],
            "activations": ["relu", "relu", "hard_swish", "hard_swish"],
        },
        [],
    ),
    "resnet50": (
        None,
        {"input_shape": [32, 32, 3], "classes": 10, "blocks": [2, 1, 1, 1]},
        [],
    ),
    "resnet50v2": (
        None,
        {"input_shape": [32, 32, 3], "classes": 10, "blocks": [2, 1, 1, 1]},
        [],
    ),
    "resnet_preact": (None, {}, []),
    "transformer_encoder": (None, {"steps": 16, "width": 32, "depth": 2, "heads": 4}, []),
    "unet": ("small", {}, [(32, 32)]),
    "vit": (
        "ti16",
        {"image_size": 32, "patch_size": 8, "depth": 2, "classes": 10},
        [],
    ),
}


def run(backend: str, stems: list[str]) -> None:
    from archc.backends.proof.verify import verify

    for stem in stems:
        variant, overrides, input_sizes = CASES[stem]
        try:
            report = verify(
                str(SPECS / f"{stem}.yaml"),
                overrides,
                variant=variant,
                batch=2,
                odd_input=False,
                input_sizes=input_sizes,
                keras_backend=backend,
            )
            line = {
                "spec": stem,
                "keras_backend": report.keras_backend,
                "layers_checked": report.layers_checked,
                "max_abs_diff": report.max_abs_diff,
            }
        except Exception as exc:  # reported, and the test fails on it
            text = "\n".join(d.format() for d in getattr(exc, "diagnostics", [])) or repr(exc)
            line = {"spec": stem, "error": f"{type(exc).__name__}: {text}"}
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2:] or sorted(CASES))
