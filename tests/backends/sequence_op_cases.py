"""Small specs of the sequence and attention ops for tests/backends/op_cases.py (`OP_CASES`):
every backend builds and counts them against the IR. Framework-neutral, as op_cases' own:
a YAML comment at the top of each says what it is for; odd step counts so that a backend
that pads or strides wrongly gets a different shape.

`SEQUENCE_TORCH_KEY`: the PyTorch parameter each of their IR weights becomes
(docs/ARCHITECTURE.md), for test_torch_backend's table.
"""

from __future__ import annotations

SEQUENCE_OP_CASES: dict[str, list[str]] = {
    "conv1d": [
        """\
# valid, same with stride 2 on an odd length (TF's extra step at the end), dilation, groups
archc: 1
name: conv1d
inputs:
  - {name: x, shape: [11, 4]}
layers:
  - {op: conv1d, name: valid, filters: 6, kernel: 3, activation: relu}
  - {op: conv1d, name: same, filters: 4, kernel: 4, strides: 2, padding: same, use_bias: false}
  - {op: conv1d, name: dilated, filters: 4, kernel: 2, dilation: 2, groups: 2, kernel_l2: 0.01}
  - {op: conv1d, name: frozen, filters: 3, kernel: 1, trainable: false}
""",
    ],
    "max_pool1d": [
        """\
# valid (strides = pool), then same with stride 2 on an odd length
archc: 1
name: max_pool1d
inputs:
  - {name: x, shape: [11, 3]}
layers:
  - {op: max_pool1d, name: valid, pool: 2}
  - {op: max_pool1d, name: same, pool: 3, strides: 2, padding: same}
""",
    ],
    "avg_pool1d": [
        """\
# same on an odd length (padding not counted), then valid with stride 1
archc: 1
name: avg_pool1d
inputs:
  - {name: x, shape: [9, 3]}
layers:
  - {op: avg_pool1d, name: same, pool: 2, padding: same}
  - {op: avg_pool1d, name: valid, pool: 2, strides: 1}
""",
    ],
    "global_avg_pool1d": [
        """\
# keepdims false, then true on another branch; both are outputs
archc: 1
name: global_avg_pool1d
inputs:
  - {name: x, shape: [7, 3]}
layers:
  - {op: global_avg_pool1d, name: gap}
  - {op: global_avg_pool1d, name: gap_keep, keepdims: true, inputs: x}
outputs: [gap, gap_keep]
""",
    ],
    "global_max_pool1d": [
        """\
# keepdims false, then true on another branch; both are outputs
archc: 1
name: global_max_pool1d
inputs:
  - {name: x, shape: [7, 3]}
layers:
  - {op: global_max_pool1d, name: gmp}
  - {op: global_max_pool1d, name: gmp_keep, keepdims: true, inputs: x}
outputs: [gmp, gmp_keep]
""",
    ],
    "embedding": [
        """\
# integer token ids to vectors, then a dense head on each position
archc: 1
name: embedding
inputs:
  - {name: tokens, shape: [7], dtype: int}
layers:
  - {op: embedding, name: embed, input_dim: 11, output_dim: 5}
  - {op: dense, name: head, units: 3}
""",
    ],
    "positional_embedding": [
        """\
# on a sequence, then on an image (held channels first by PyTorch)
archc: 1
name: positional_embedding
inputs:
  - {name: x, shape: [3, 5, 2]}
layers:
  - {op: positional_embedding, name: pos_image}
  - {op: reshape, name: seq, target_shape: [-1, 2]}
  - {op: positional_embedding, name: pos_seq}
""",
    ],
    "sinusoidal_embedding": [
        """\
# on a sequence of odd width (the last channel a sine), then with a short wavelength
archc: 1
name: sinusoidal_embedding
inputs:
  - {name: x, shape: [6, 5]}
layers:
  - {op: sinusoidal_embedding, name: pos}
  - {op: dense, name: widen, units: 4}
  - {op: sinusoidal_embedding, name: short, max_wavelength: 20.0}
""",
    ],
    "class_token": [
        """\
# prepended to a sequence, and to the rows of an image
archc: 1
name: class_token
inputs:
  - {name: x, shape: [3, 5, 2]}
layers:
  - {op: class_token, name: rows}
  - {op: reshape, name: seq, target_shape: [-1, 2]}
  - {op: class_token, name: cls}
""",
    ],
    "take": [
        """\
# the first step of a sequence (a class token), the last channel; a column of an image
archc: 1
name: take
inputs:
  - {name: x, shape: [3, 5, 2]}
layers:
  - {op: take, name: column, index: 2, axis: 1}
  - {op: take, name: first, index: 0}
  - {op: take, name: last_channel, index: -1, axis: -1, inputs: column}
outputs: [first, last_channel]
""",
    ],
    "slice": [
        """\
# steps 1..4 of a sequence, channels 0..1; rows of an image
archc: 1
name: slice
inputs:
  - {name: x, shape: [6, 5, 3]}
layers:
  - {op: slice, name: rows, start: 1, stop: -2}
  - {op: reshape, name: seq, target_shape: [-1, 3]}
  - {op: slice, name: steps, start: 1, stop: 5}
  - {op: slice, name: channels, stop: 2, axis: -1}
""",
    ],
    "permute": [
        """\
# a sequence transposed (token mixing), an image's axes rotated
archc: 1
name: permute
inputs:
  - {name: x, shape: [3, 5, 2]}
layers:
  - {op: permute, name: rotated, dims: [2, 0, 1]}
  - {op: reshape, name: seq, target_shape: [6, 5]}
  - {op: permute, name: swapped, dims: [1, 0]}
  - {op: dense, name: mix, units: 4}
""",
    ],
    "multi_head_attention": [
        """\
# self-attention (causal), then cross-attention with other sizes and a key, no bias
archc: 1
name: multi_head_attention
inputs:
  - {name: x, shape: [7, 8]}
layers:
  - {op: slice, name: query, stop: 5}
  - {op: multi_head_attention, name: self_attn, num_heads: 2, key_dim: 4, causal: true}
  - {op: dense, name: memory, units: 6, inputs: x}
  - {op: dense, name: keys, units: 3, inputs: x}
  - op: multi_head_attention
    name: cross
    inputs: [self_attn, memory, keys]
    num_heads: 3
    key_dim: 2
    value_dim: 5
    output_dim: 4
    use_bias: false
""",
    ],
    "lstm": [
        """\
# stacked: bidirectional with every step (concat), then the last step of one direction
archc: 1
name: lstm
inputs:
  - {name: x, shape: [7, 5]}
layers:
  - {op: lstm, name: bi, units: 4, return_sequences: true, bidirectional: true}
  - {op: lstm, name: last, units: 3, use_bias: false}
""",
    ],
    "gru": [
        """\
# every step, then bidirectional summed, the last step; one layer frozen
archc: 1
name: gru
inputs:
  - {name: x, shape: [6, 3]}
layers:
  - {op: gru, name: seq, units: 4, return_sequences: true, trainable: false}
  - {op: gru, name: bi, units: 2, bidirectional: true, merge_mode: sum}
""",
    ],
    "simple_rnn": [
        """\
# relu with every step, then bidirectional averaged (a product on another branch)
archc: 1
name: simple_rnn
inputs:
  - {name: x, shape: [5, 3]}
layers:
  - {op: simple_rnn, name: seq, units: 4, activation: relu, return_sequences: true}
  - {op: simple_rnn, name: ave, units: 3, bidirectional: true, merge_mode: ave}
  - {op: simple_rnn, name: mul, units: 2, bidirectional: true, merge_mode: mul, inputs: seq}
outputs: [ave, mul]
""",
    ],
}

SEQUENCE_TORCH_KEY = {
    "embeddings": "weight",  # embedding (nn.Embedding's) and positional_embedding
    "token": "token",
    **{
        f"{keras}/{part}": f"{torch}_{part}"
        for keras, torch in (
            ("query", "query"),
            ("key", "key"),
            ("value", "value"),
            ("attention_output", "output"),
        )
        for part in ("kernel", "bias")
    },
}
# lstm, gru, simple_rnn (their `kernel` and `bias` are not a dense's): nn.LSTM's names, one
# Keras bias (the GRU's (2, 3u)) per direction
RECURRENT_OPS = ("lstm", "gru", "simple_rnn")
RECURRENT_TORCH_KEY = {
    f"{prefix}{keras}": f"{torch}{suffix}"
    for prefix, suffix in (("", "_l0"), ("forward/", "_l0"), ("backward/", "_l0_reverse"))
    for keras, torch in (
        ("kernel", "weight_ih"),
        ("recurrent_kernel", "weight_hh"),
        ("bias", "bias"),
    )
}
