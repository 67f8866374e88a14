"""Small specs of the language-model ops for tests/backends/op_cases.py (`OP_CASES`): every
backend builds and counts them against the IR. Framework-neutral, as op_cases' own: a YAML
comment at the top of each says what it is for.

`LLM_TORCH_KEY`: the PyTorch parameter each of their IR weights becomes (rms_norm's scale is
nn.RMSNorm's weight; grouped_query_attention's are multi_head_attention's names, in
sequence_op_cases.py), for test_torch_backend's table.
"""

from __future__ import annotations

LLM_OP_CASES: dict[str, list[str]] = {
    "rms_norm": [
        """\
# over a sequence's channels, an epsilon of its own, frozen
archc: 1
name: rms_norm
inputs:
  - {name: x, shape: [5, 6]}
layers:
  - {op: rms_norm, name: norm}
  - {op: rms_norm, name: loose, epsilon: 0.01}
  - {op: rms_norm, name: frozen, trainable: false}
""",
        """\
# per pixel of an image, over its channels
archc: 1
name: rms_norm_image
inputs:
  - {name: img, shape: [3, 5, 4]}
layers:
  - {op: rms_norm, name: pixels}
""",
    ],
    "grouped_query_attention": [
        """\
# grouped heads with biases, frozen; causal with rotary positions, no bias, one key-value head
archc: 1
name: grouped_query_attention
inputs:
  - {name: x, shape: [7, 8]}
layers:
  - op: grouped_query_attention
    name: grouped
    head_dim: 3
    num_query_heads: 4
    num_key_value_heads: 2
    trainable: false
  - op: grouped_query_attention
    name: rotary
    head_dim: 4
    num_query_heads: 3
    num_key_value_heads: 1
    use_bias: false
    causal: true
    rope: true
    rope_theta: 500.0
""",
    ],
}
LLM_TORCH_KEY = {"scale": "weight"}
