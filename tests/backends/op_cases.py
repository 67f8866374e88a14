"""Small specs, per op, that every backend builds and counts against the IR.

`OP_CASES` maps each registered op (except `input`, which every spec uses) to one or more
complete YAML spec texts that exercise its attributes: strides, `same`/`valid` padding on odd
and non-square sizes, dilation, groups, bias off, `trainable: false`, `kernel_l2`, activations,
`keepdims`, concat axes, reshape with -1, ... The texts are framework-neutral: no backend names
appear, and a YAML comment at the top of each says what it is for. Every node reaches the
output (a functional model drops layers that do not), and input sizes are odd and non-square
so that a backend that pads or strides wrongly gets a different shape.

A new op is not done until it has a case here: tests fail when the registry has an op that
`OP_CASES` does not cover.
"""

from __future__ import annotations

import typing

from archc.compiler.ops import Activation
from tests.backends.llm_op_cases import LLM_OP_CASES
from tests.backends.sequence_op_cases import SEQUENCE_OP_CASES

# every activation function the spec language declares, in a chain (softmax last: the others
# after it would see values in [0, 1] only)
ACTIVATION_CHAIN = """\
# every activation function in a chain
archc: 1
name: activations
inputs:
  - {name: x, shape: [5, 3, 4]}
layers:
""" + "".join(
    f"  - {{op: activation, name: a_{fn}, fn: {fn}}}\n"
    for fn in sorted(typing.get_args(Activation), key=lambda fn: fn == "softmax")
)

OP_CASES: dict[str, list[str]] = {
    "conv2d": [
        """\
# valid padding, stride 2 on odd sizes, bias, relu
archc: 1
name: conv2d_valid_strided
inputs:
  - {name: x, shape: [9, 7, 4]}
layers:
  - {op: conv2d, name: conv, filters: 6, kernel: 3, strides: 2, activation: relu}
""",
        """\
# same padding, non-square kernel and strides (uneven TF pads), no bias, kernel_l2
archc: 1
name: conv2d_same_uneven
inputs:
  - {name: x, shape: [10, 7, 3]}
layers:
  - op: conv2d
    name: conv
    filters: 5
    kernel: [3, 2]
    strides: [2, 3]
    padding: same
    use_bias: false
    kernel_l2: 0.001
""",
        """\
# dilation with same and valid padding, groups, frozen layer, silu
archc: 1
name: conv2d_dilated_grouped
inputs:
  - {name: x, shape: [11, 8, 4]}
layers:
  - {op: conv2d, name: dil_same, filters: 6, kernel: 3, dilation: 2, padding: same}
  - op: conv2d
    name: grouped
    filters: 4
    kernel: [3, 1]
    dilation: [2, 1]
    groups: 2
    activation: silu
    trainable: false
  - {op: conv2d, name: one_by_one, filters: 2, kernel: 1, use_bias: false, kernel_l2: 0.01}
""",
    ],
    "conv2d_transpose": [
        """\
# 'same' with an odd kernel (TF crops k - s = 1 at the bottom/right), 'valid' with an even
# one and non-square strides, a stride above the kernel, relu, no bias
archc: 1
name: conv2d_transpose
inputs:
  - {name: x, shape: [5, 7, 3]}
layers:
  - {op: conv2d_transpose, name: up_same, filters: 4, kernel: 3, strides: 2, padding: same}
  - op: conv2d_transpose
    name: up_valid
    filters: 2
    kernel: [4, 2]
    strides: [2, 3]
    activation: relu
    inputs: x
  - op: conv2d_transpose
    name: up_sparse
    filters: 2
    kernel: 2
    strides: 3
    padding: same
    use_bias: false
    inputs: x
outputs: [up_same, up_valid, up_sparse]
""",
    ],
    "separable_conv2d": [
        """\
# strided 'same' (uneven TF pads), depth multiplier 2, bias; then valid without bias, relu
archc: 1
name: separable
inputs:
  - {name: x, shape: [8, 7, 3]}
layers:
  - op: separable_conv2d
    name: sep
    filters: 5
    kernel: 3
    strides: 2
    padding: same
    depth_multiplier: 2
  - {op: separable_conv2d, name: sep2, filters: 4, kernel: 2, use_bias: false, activation: relu}
""",
    ],
    "depthwise_conv2d": [
        """\
# same padding, stride 2 on odd sizes, depth multiplier, bias
archc: 1
name: depthwise_same_strided
inputs:
  - {name: x, shape: [9, 6, 3]}
layers:
  - op: depthwise_conv2d
    name: dw
    kernel: 3
    strides: 2
    padding: same
    depth_multiplier: 2
""",
        """\
# valid dilated kernel, no bias, kernel_l2, relu6, frozen
archc: 1
name: depthwise_dilated_frozen
inputs:
  - {name: x, shape: [10, 9, 4]}
layers:
  - op: depthwise_conv2d
    name: dw
    kernel: [3, 2]
    dilation: 2
    use_bias: false
    kernel_l2: 0.0001
    activation: relu6
    trainable: false
  - {op: depthwise_conv2d, name: dw2, kernel: 1, depth_multiplier: 3}
""",
    ],
    "batch_norm": [
        """\
# defaults on an image tensor
archc: 1
name: batch_norm_defaults
inputs:
  - {name: x, shape: [5, 7, 6]}
layers:
  - {op: batch_norm, name: bn}
""",
        """\
# epsilon and momentum, no center (beta), frozen
archc: 1
name: batch_norm_frozen
inputs:
  - {name: x, shape: [5, 3, 4]}
layers:
  - {op: batch_norm, name: bn, epsilon: 0.00001, momentum: 0.9, center: false, trainable: false}
""",
        """\
# no scale (gamma), on a flat tensor
archc: 1
name: batch_norm_flat
inputs:
  - {name: x, shape: [3, 5, 2]}
layers:
  - {op: flatten, name: flat}
  - {op: batch_norm, name: bn, scale: false}
""",
    ],
    "upsample2d": [
        """\
# nearest by (2, 3), bilinear by 2 on another branch
archc: 1
name: upsample
inputs:
  - {name: x, shape: [3, 4, 2]}
layers:
  - {op: upsample2d, name: nearest, size: [2, 3]}
  - {op: upsample2d, name: bilinear, interpolation: bilinear, inputs: x}
outputs: [nearest, bilinear]
""",
    ],
    "cropping2d": [
        """\
# asymmetric crops, then a symmetric one
archc: 1
name: cropping
inputs:
  - {name: x, shape: [7, 9, 2]}
layers:
  - {op: cropping2d, name: crop, cropping: [[1, 0], [2, 3]]}
  - {op: cropping2d, name: crop_again, cropping: 1}
""",
    ],
    "rescaling": [
        """\
# [0, 255] pixels to [-1, 1], then a scale alone
archc: 1
name: rescaling
inputs:
  - {name: x, shape: [4, 5, 3]}
layers:
  - {op: rescaling, name: to_unit, scale: 0.00784313725490196, offset: -1.0}
  - {op: rescaling, name: halve, scale: 0.5}
""",
    ],
    "layer_norm": [
        """\
# on an image (channels), with Keras' default epsilon, then gamma or beta alone, on a vector
archc: 1
name: layer_norm
inputs:
  - {name: x, shape: [5, 7, 4]}
layers:
  - {op: layer_norm, name: ln}
  - {op: layer_norm, name: ln_scale, epsilon: 0.1, center: false}
  - {op: global_avg_pool2d, name: pool}
  - {op: layer_norm, name: ln_vector, scale: false}
""",
    ],
    "activation": [ACTIVATION_CHAIN],
    "dense": [
        """\
# on a flat tensor, softmax, kernel_l2
archc: 1
name: dense_flat
inputs:
  - {name: x, shape: [3, 5, 2]}
layers:
  - {op: flatten, name: flat}
  - {op: dense, name: fc, units: 7, activation: softmax, kernel_l2: 0.001}
""",
        """\
# on the last axis of an image tensor, no bias, frozen, then a tanh head
archc: 1
name: dense_image
inputs:
  - {name: x, shape: [3, 5, 4]}
layers:
  - {op: dense, name: fc1, units: 6, use_bias: false, trainable: false}
  - {op: dense, name: fc2, units: 2, activation: tanh}
""",
    ],
    "flatten": [
        """\
# an odd, non-square image to one axis
archc: 1
name: flatten
inputs:
  - {name: x, shape: [3, 5, 7]}
layers:
  - {op: flatten, name: flat}
""",
    ],
    "reshape": [
        """\
# -1 inferred, then an explicit shape
archc: 1
name: reshape
inputs:
  - {name: x, shape: [4, 3, 2]}
layers:
  - {op: reshape, name: r1, target_shape: [-1, 6]}
  - {op: reshape, name: r2, target_shape: [2, 3, 4]}
  - {op: reshape, name: r3, target_shape: [24]}
""",
    ],
    "dropout": [
        """\
# identity at inference, no weights
archc: 1
name: dropout
inputs:
  - {name: x, shape: [5, 3, 2]}
layers:
  - {op: dropout, name: drop, rate: 0.25}
""",
        """\
# noise shapes: whole samples (EfficientNet), per channel, and a size or null per element
archc: 1
name: dropout_noise_shape
inputs:
  - {name: x, shape: [5, 3, 2]}
layers:
  - {op: dropout, name: per_sample, rate: 0.2, noise_shape: [1, 1, 1]}
  - {op: dropout, name: per_channel, rate: 0.5, noise_shape: [1, 1, null]}
  - {op: dropout, name: per_row, rate: 0.1, noise_shape: [5, 1, 2]}
  - {op: flatten, name: flat}
  - {op: dropout, name: flat_drop, rate: 0.3, noise_shape: [1]}
""",
    ],
    "stochastic_depth": [
        """\
# ConvNeXt's residual branch (per-sample drop) on an image, then on a vector
archc: 1
name: stochastic_depth
inputs:
  - {name: x, shape: [5, 7, 4]}
layers:
  - {op: conv2d, name: branch, filters: 4, kernel: 3, padding: same}
  - {op: stochastic_depth, name: drop_path, rate: 0.1}
  - {op: add, name: residual, inputs: [x, drop_path]}
  - {op: global_avg_pool2d, name: pool}
  - {op: stochastic_depth, name: drop_vector, rate: 0.5}
""",
    ],
    "normalization": [
        """\
# stored statistics (Keras' mean, variance and count weights), then fixed per-channel values
# (ImageNet's, ConvNeXt's stem), fixed numbers, and stored statistics of a flat tensor
archc: 1
name: normalization
inputs:
  - {name: x, shape: [5, 7, 3]}
layers:
  - {op: normalization, name: stored}
  - op: normalization
    name: imagenet
    mean: [123.675, 116.28, 103.53]
    variance: [3409.976025, 3262.6944, 3291.890625]
  - {op: normalization, name: numbers, mean: 0.5, variance: 4}
  - {op: flatten, name: flat}
  - {op: normalization, name: stored_flat}
""",
    ],
    "layer_scale": [
        """\
# ConvNeXt's LayerScale on an image (its init value), Keras' default, frozen, on a vector
archc: 1
name: layer_scale
inputs:
  - {name: x, shape: [5, 7, 4]}
layers:
  - {op: layer_scale, name: scale, init_value: 0.000001}
  - {op: layer_scale, name: scale_default}
  - {op: layer_scale, name: frozen, init_value: 0.5, trainable: false}
  - {op: global_avg_pool2d, name: pool}
  - {op: layer_scale, name: scale_vector, init_value: 2.0}
""",
    ],
    "add": [
        """\
# three inputs by name, one of them the graph input
archc: 1
name: add3
inputs:
  - {name: x, shape: [7, 5, 3]}
layers:
  - {op: conv2d, name: c1, filters: 3, kernel: 3, padding: same}
  - {op: conv2d, name: c2, filters: 3, kernel: 1, inputs: x}
  - {op: add, name: sum, inputs: [c1, c2, x]}
""",
        """\
# per-input coefficients (one layer): a residual scaled as InceptionResNetV2's, a computed
# coefficient, three inputs with a broadcast (1, 1, C) gate
archc: 1
name: add_scales
params:
  scale: {type: float, default: 0.17}
inputs:
  - {name: x, shape: [7, 5, 3]}
layers:
  - {op: conv2d, name: up, filters: 3, kernel: 1}
  - {op: add, name: residual, inputs: [x, up], scales: [1, 0.17]}
  - {op: add, name: computed, inputs: [residual, up], scales: [1, "${scale * 2}"]}
  - {op: global_avg_pool2d, name: gate, keepdims: true}
  - {op: add, name: three, inputs: [gate, x, computed], scales: [-0.5, 1, 2]}
""",
    ],
    "multiply": [
        """\
# gating: a sigmoid branch times the trunk
archc: 1
name: multiply
inputs:
  - {name: x, shape: [5, 7, 4]}
layers:
  - {op: conv2d, name: gate, filters: 4, kernel: 1, activation: sigmoid}
  - {op: multiply, name: gated, inputs: [x, gate]}
""",
        """\
# squeeze-excite: a (1, 1, C) gate scales every pixel (broadcasting, equal ranks)
archc: 1
name: squeeze_excite
inputs:
  - {name: x, shape: [5, 7, 4]}
layers:
  - {op: global_avg_pool2d, name: squeeze, keepdims: true}
  - {op: conv2d, name: reduce, filters: 2, kernel: 1, activation: relu}
  - {op: conv2d, name: expand, filters: 4, kernel: 1, activation: sigmoid}
  - {op: multiply, name: excite, inputs: [x, expand]}
""",
    ],
    "subtract": [
        """\
# a per-channel vector minus an image (broadcasting across ranks), then image minus image
archc: 1
name: subtract
inputs:
  - {name: x, shape: [5, 7, 4]}
layers:
  - {op: global_avg_pool2d, name: mean}
  - {op: subtract, name: centred, inputs: [mean, x]}
  - {op: subtract, name: back, inputs: [x, centred]}
""",
    ],
    "concat": [
        """\
# channels (axis -1, the default) with unequal channel counts, three inputs
archc: 1
name: concat_channels
inputs:
  - {name: x, shape: [5, 7, 3]}
layers:
  - {op: conv2d, name: a, filters: 2, kernel: 1}
  - {op: conv2d, name: b, filters: 5, kernel: 3, padding: same, inputs: x}
  - {op: concat, name: cat, inputs: [x, a, b]}
""",
        """\
# logical axis 1 (width, batch excluded) with unequal widths
archc: 1
name: concat_width
inputs:
  - {name: x, shape: [5, 7, 3]}
layers:
  - {op: conv2d, name: narrow, filters: 3, kernel: [1, 3]}
  - {op: concat, name: cat, axis: 1, inputs: [x, narrow]}
""",
        """\
# logical axis 0 (height, batch excluded) and negative axis -2 (width)
archc: 1
name: concat_height
inputs:
  - {name: x, shape: [5, 7, 3]}
layers:
  - {op: conv2d, name: short, filters: 3, kernel: [3, 1]}
  - {op: concat, name: cat_h, axis: 0, inputs: [x, short]}
  - {op: conv2d, name: thin, filters: 3, kernel: [1, 2]}
  - {op: concat, name: cat_w, axis: -2, inputs: [cat_h, thin]}
""",
    ],
    "max_pool2d": [
        """\
# same padding, stride 2 on odd sizes (uneven pads)
archc: 1
name: max_pool_same
inputs:
  - {name: x, shape: [9, 6, 3]}
layers:
  - {op: max_pool2d, name: pool, pool: 3, strides: 2, padding: same}
""",
        """\
# valid, non-square pool, strides default to the pool size
archc: 1
name: max_pool_valid
inputs:
  - {name: x, shape: [7, 10, 2]}
layers:
  - {op: max_pool2d, name: pool, pool: [2, 3]}
""",
    ],
    "avg_pool2d": [
        """\
# same padding, stride 1 (padding not counted in the divisor)
archc: 1
name: avg_pool_same
inputs:
  - {name: x, shape: [7, 6, 3]}
layers:
  - {op: avg_pool2d, name: pool, pool: 3, strides: 1, padding: same}
""",
        """\
# valid, non-square strides on odd sizes
archc: 1
name: avg_pool_valid
inputs:
  - {name: x, shape: [9, 11, 2]}
layers:
  - {op: avg_pool2d, name: pool, pool: 3, strides: [2, 3]}
""",
    ],
    "global_max_pool2d": [
        """\
# keepdims false, then true on another branch; both are outputs
archc: 1
name: global_max_pool
inputs:
  - {name: x, shape: [5, 7, 3]}
layers:
  - {op: global_max_pool2d, name: gmp}
  - {op: global_max_pool2d, name: gmp_keep, keepdims: true, inputs: x}
outputs: [gmp, gmp_keep]
""",
    ],
    "global_avg_pool2d": [
        """\
# keepdims false, then true on another branch; both are outputs
archc: 1
name: global_avg_pool
inputs:
  - {name: x, shape: [5, 7, 3]}
layers:
  - {op: global_avg_pool2d, name: gap}
  - {op: global_avg_pool2d, name: gap_keep, keepdims: true, inputs: x}
outputs: [gap, gap_keep]
""",
    ],
    "zero_pad2d": [
        """\
# n, [h, w] and [[top, bottom], [left, right]]
archc: 1
name: zero_pad
inputs:
  - {name: x, shape: [3, 5, 2]}
layers:
  - {op: zero_pad2d, name: p_all}
  - {op: zero_pad2d, name: p_hw, padding: [1, 2]}
  - {op: zero_pad2d, name: p_each, padding: [[0, 1], [2, 3]]}
""",
    ],
}
OP_CASES.update(SEQUENCE_OP_CASES)  # sequences and attention: sequence_op_cases.py
OP_CASES.update(LLM_OP_CASES)  # rms_norm, grouped_query_attention: llm_op_cases.py
