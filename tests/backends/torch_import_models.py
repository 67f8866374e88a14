"""PyTorch models written with torch.nn for `archc import torch`'s tests (torchvision is not
a dependency: its ResNet-18 is written out here as torchvision builds it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3x3 convolutions, a 1x1 convolution and BN downsample
    where the shape changes, one nn.ReLU module called twice."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """torchvision's resnet18 (width 64: 11,689,512 parameters at 1000 classes)."""

    def __init__(self, classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        layers = []
        cin = width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2**i
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _randomize_statistics(model: nn.Module, seed: int) -> nn.Module:
    """BatchNorm statistics and affine values away from 1 and 0, so that moving them matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def small_resnet18() -> nn.Module:
    torch.manual_seed(0)
    return _randomize_statistics(ResNet18(classes=10, width=8), 1)


def resnet18() -> nn.Module:
    """Full width, 1000 classes (for `archc import torch ... --prove` by hand: tests prove
    the narrow one)."""
    torch.manual_seed(0)
    return _randomize_statistics(ResNet18(), 1)


class Encoder(nn.Module):
    """nn.TransformerEncoder, 4 post-norm layers, batch_first, then a classifier on the mean
    of the steps... no: on the steps as they are (a per-step head)."""

    def __init__(self, width: int = 16, heads: int = 4, depth: int = 4) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout=0.1, activation="gelu", batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def encoder() -> nn.Module:
    torch.manual_seed(0)
    return Encoder()


class Tagger(nn.Module):
    """A part-of-speech tagger: embedding, a 2-layer bidirectional LSTM, a linear layer per
    step."""

    def __init__(self, vocabulary: int = 50, width: int = 8, units: int = 6, tags: int = 5):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.lstm = nn.LSTM(width, units, num_layers=2, batch_first=True, bidirectional=True)
        self.tagger = nn.Linear(2 * units, tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x, _ = self.lstm(self.embed(tokens))
        return self.tagger(x)


def tagger() -> nn.Module:
    torch.manual_seed(0)
    model = Tagger()
    with torch.no_grad():  # biases away from 0, so that folding them matters
        for name, p in model.lstm.named_parameters():
            if "bias" in name:
                p.uniform_(-0.5, 0.5)
    return model


@fx.wrap
def scramble(x: torch.Tensor) -> torch.Tensor:
    """A custom function archc has no op for."""
    return x.flip(-1)


class Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc(x))
        return scramble(x)


def custom() -> nn.Module:
    return Custom()


class Mixed(nn.Module):
    """Functional code and the padding rules: a strided padded convolution (an explicit zero
    pad), `same`-equivalent ones (odd kernels, per-axis padding, dilation), torch.cat on the
    channels, a product with a gate, numbers added and multiplied, a flatten of an image
    (channels first in PyTorch), an adaptive pool to one pixel then a flatten, LayerNorm,
    activations as modules, functions and methods (x.relu_()), a softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8, eps=1e-3, momentum=0.3)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 4, (5, 3), padding=(2, 1), bias=False)
        self.c = nn.Conv2d(8, 12, 3, padding=2, dilation=2)
        self.act = nn.GELU(approximate="tanh")
        self.pool = nn.AvgPool2d(2)
        self.ln = nn.LayerNorm(12 + 12 * 4 * 3, eps=1e-6)
        self.drop = nn.Dropout(0.2)
        self.leaky = nn.LeakyReLU(0.1)
        self.fc = nn.Linear(12 + 12 * 4 * 3, 5)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.stem(x - 0.5)).relu_()
        y = torch.cat([self.a(x), self.b(x)], dim=1)
        y = self.act(y) * torch.sigmoid(2.0 * self.c(x))
        y = self.pool(y)
        g = F.adaptive_avg_pool2d(y, 1).flatten(1)
        z = torch.cat([g, torch.flatten(y, 1)], dim=1)
        z = self.leaky(self.drop(self.ln(z)))
        return self.softmax(self.fc(z))


def mixed() -> nn.Module:
    torch.manual_seed(0)
    return _randomize_statistics(Mixed(), 2)


class FlatHead(nn.Module):
    """A convolution, then a flatten of its (C, H, W) and a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.fc = nn.Linear(3 * 4 * 5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).view(x.size(0), -1))


class PaddedPools(nn.Module):
    """Max pooling with padding after a relu; average pooling with padding (zeros counted,
    PyTorch's default); a strided convolution with padding."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.max = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg = nn.AvgPool2d(3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.avg(self.max(self.relu(self.conv(x))))


class SignedPool(nn.Module):
    """Max pooling with padding on values that may be negative (PyTorch pads with -inf)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))


class Cumulative(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(self.fc(x), dim=1)


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        if y.sum() > 0:
            return y
        return -y


class FinalState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 3, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(x)
        return h[-1]


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fc(x))


class PreNorm(nn.Module):
    """nn.TransformerEncoder: pre-norm layers with relu and a final norm."""

    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, norm_first=True, batch_first=True)
        self.encoder = nn.TransformerEncoder(
            layer, 2, norm=nn.LayerNorm(8), enable_nested_tensor=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class CrossAttention(nn.Module):
    """nn.MultiheadAttention with keys and values of another width (kdim, vdim)."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(4, 8)
        self.kv = nn.Linear(4, 6)
        self.attn = nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kv = self.kv(x)
        out, _ = self.attn(self.q(x), kv, kv, need_weights=False)
        return out


class GruTagger(nn.Module):
    """nn.GRU (Keras' reset_after GRU: the same two biases, counts exact), then nn.RNN."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 4)
        self.gru = nn.GRU(4, 5, batch_first=True, bidirectional=True)
        self.rnn = nn.RNN(10, 3, batch_first=True, nonlinearity="relu")
        self.out = nn.Linear(3, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x, _ = self.gru(self.embed(tokens))
        x, _ = self.rnn(x)
        return self.out(x)


def gru_tagger() -> nn.Module:
    torch.manual_seed(0)
    model = GruTagger()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "bias" in name:
                p.uniform_(-0.5, 0.5)
    return model


class Masked(nn.Module):
    """forward(input, mask=None): the argument with a default is traced at it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))

    def forward(self, input: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            input = input * mask
        return self.body(input)


def sequential() -> nn.Module:
    """A top-level nn.Sequential: its layers are named 0, 1, ..."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.SiLU(), nn.BatchNorm1d(6), nn.Linear(6, 3))


class Decoder(nn.Module):
    """Transposed convolutions (valid: k = s; same: padding (k - s) / 2), upsampling as a
    module and by F.interpolate (nearest, bilinear)."""

    def __init__(self) -> None:
        super().__init__()
        self.up1 = nn.ConvTranspose2d(3, 4, 2, stride=2)
        self.up2 = nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1, bias=False)
        self.up3 = nn.Upsample(scale_factor=2, mode="bilinear")
        self.conv = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up3(F.relu(self.up2(self.up1(x))))
        return F.interpolate(self.conv(x), scale_factor=2.0)


class Readout(nn.Module):
    """x[:, 0] (a class token's readout) and x[:, 1:4] of a sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 6)
        self.head = nn.Linear(6 + 18, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        return self.head(torch.cat([x[:, 0], x[:, 1:4].flatten(1)], dim=1))


def frozen() -> nn.Module:
    """FlatHead with its convolution frozen (requires_grad False)."""
    model = FlatHead()
    model.conv.requires_grad_(False)
    return model


def bare_encoder() -> nn.Module:
    """The model is an nn.TransformerEncoder itself (pre-norm, 2 layers)."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, norm_first=True, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


def bare_lstm() -> nn.Module:
    """The model is an nn.LSTM itself: its output is a tuple."""
    return nn.LSTM(4, 3, batch_first=True)
