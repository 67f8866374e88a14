"""Hand-written twins of the seed network, independent of archc.

`seed_keras3` is the seed network's original Keras code ported to Keras 3 (the only
changes: `keras.layers` for `tf.contrib.keras.layers`, `Conv2D` for `Convolution2D`, and
`//` for the pool size). `SeedTorch` is the same network written by hand in PyTorch the way
a careful person would (TF 'same' padding for the strided stem, Keras' BN epsilon/momentum).
Tests compare archc's models with these; benchmarks time archc's against them.
"""

from __future__ import annotations

from typing import Any


def seed_keras3(
    input_shape: tuple[int, int, int] = (32, 32, 3),
    nb_classes: int = 5,
    num_stages: int = 5,
    use_final_conv: bool = False,
    reg: float = 0.0,
) -> Any:
    from keras import layers, models, regularizers

    def residual_block(input_tensor: Any, filters: list[int], stage: int) -> Any:
        bn_name, conv_name = f"bn{stage}", f"conv{stage}"
        relu_name, merge_name = f"relu{stage}", f"merge{stage}"
        if stage > 1:
            x = layers.BatchNormalization(name=bn_name + "a")(input_tensor)
            x = layers.Activation("relu", name=relu_name + "a")(x)
        else:
            x = input_tensor
        x = layers.Conv2D(
            filters[0],
            (1, 1),
            kernel_regularizer=regularizers.l2(reg),
            use_bias=False,
            name=conv_name + "a",
        )(x)
        x = layers.BatchNormalization(name=bn_name + "b")(x)
        x = layers.Activation("relu", name=relu_name + "b")(x)
        x = layers.Conv2D(
            filters[1],
            (3, 3),
            padding="same",
            kernel_regularizer=regularizers.l2(reg),
            use_bias=False,
            name=conv_name + "b",
        )(x)
        x = layers.BatchNormalization(name=bn_name + "c")(x)
        x = layers.Activation("relu", name=relu_name + "c")(x)
        x = layers.Conv2D(
            filters[2], (1, 1), kernel_regularizer=regularizers.l2(reg), name=conv_name + "c"
        )(x)
        return layers.add([x, input_tensor], name=merge_name)

    img_input = layers.Input(shape=input_shape, name="input_3")
    x = layers.Conv2D(
        128,
        (3, 3),
        strides=(2, 2),
        padding="same",
        kernel_regularizer=regularizers.l2(reg),
        use_bias=False,
        name="conv0",
    )(img_input)
    x = layers.BatchNormalization(name="bn0")(x)
    x = layers.Activation("relu", name="relu0")(x)
    for stage in range(1, num_stages + 1):
        x = residual_block(x, [32, 32, 128], stage=stage)
    x = layers.BatchNormalization(name="bnF")(x)
    x = layers.Activation("relu", name="reluF")(x)
    if use_final_conv:
        x = layers.Conv2D(
            64, (3, 3), padding="same", kernel_regularizer=regularizers.l2(reg), name="convF"
        )(x)
    pool_size = input_shape[0] // 2
    x = layers.AveragePooling2D((pool_size, pool_size), name="avg_pool")(x)
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(nb_classes, activation="softmax", name="fc10")(x)
    return models.Model(img_input, x, name="rnpa")


def seed_torch(nb_classes: int = 5, num_stages: int = 5) -> Any:
    import torch
    import torch.nn.functional as F
    from torch import nn

    def bn(c: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

    class Bottleneck(nn.Module):
        def __init__(self, stage: int) -> None:
            super().__init__()
            self.pre = nn.Sequential(bn(128), nn.ReLU()) if stage > 1 else nn.Identity()
            self.body = nn.Sequential(
                nn.Conv2d(128, 32, 1, bias=False),
                bn(32),
                nn.ReLU(),
                nn.Conv2d(32, 32, 3, padding=1, bias=False),
                bn(32),
                nn.ReLU(),
                nn.Conv2d(32, 128, 1),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(self.pre(x)) + x

    class SeedTorch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv0 = nn.Conv2d(3, 128, 3, stride=2, bias=False)
            self.bn0 = bn(128)
            self.stages = nn.Sequential(*(Bottleneck(s) for s in range(1, num_stages + 1)))
            self.bnF = bn(128)
            self.fc = nn.Linear(128, nb_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu(self.bn0(self.conv0(F.pad(x, (0, 1, 0, 1)))))
            x = F.relu(self.bnF(self.stages(x)))
            x = F.avg_pool2d(x, 16).flatten(1)
            return F.softmax(self.fc(x), dim=1)

    return SeedTorch()
