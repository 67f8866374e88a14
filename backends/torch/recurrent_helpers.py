"""Recurrent layers that generated PyTorch files carry (lstm, gru, simple_rnn), copied by
source like torch_helpers' (a generated file imports only torch).

Each runs PyTorch's own recurrent kernel (torch.lstm, torch.gru, torch.rnn_tanh/relu, what
nn.LSTM, nn.GRU and nn.RNN call) on (N, T, C) sequences, with nn.LSTM's weight layout and
gate order: weight_ih_l0 (gates * units, C), weight_hh_l0 (gates * units, units), and
`_reverse` for the backward direction. The biases are Keras': where Keras has one bias per
gate value (LSTM, SimpleRNN) the module has one, `bias_l0` (what nn.LSTM's
bias_ih_l0 + bias_hh_l0 sum to; the recurrent bias the kernel takes is zero, made at each
call, not kept); the GRU's is (2, 3 * units): nn.GRU's bias_ih_l0 and bias_hh_l0 stacked.
So the parameters count as Keras' weights do.

Keras' initial values: Glorot-uniform input kernels, orthogonal recurrent kernels (Keras'
Orthogonal on its (units, gates * units) matrix is the transpose of nn.init.orthogonal_ on
PyTorch's (gates * units, units)), zero biases but the LSTM's forget gate (ones).
"""

from __future__ import annotations

import torch
from torch import nn


class KerasRecurrent(nn.Module):
    """The part the recurrent layers share: parameters per direction, the initial state, the
    last step or every step, and Bidirectional's merge_mode (concat, sum, mul, ave)."""

    gates = 1

    def __init__(
        self,
        input_size: int,
        units: int,
        use_bias: bool = True,
        return_sequences: bool = False,
        bidirectional: bool = False,
        merge_mode: str = "concat",
    ) -> None:
        super().__init__()
        self.input_size, self.units, self.use_bias = input_size, units, use_bias
        self.return_sequences, self.bidirectional = return_sequences, bidirectional
        self.merge_mode = merge_mode
        self.directions = ("_l0", "_l0_reverse") if bidirectional else ("_l0",)
        n = self.gates * units
        for d in self.directions:
            self.register_parameter(f"weight_ih{d}", nn.Parameter(torch.empty(n, input_size)))
            self.register_parameter(f"weight_hh{d}", nn.Parameter(torch.empty(n, units)))
            bias = nn.Parameter(torch.empty(self.bias_shape())) if use_bias else None
            self.register_parameter(f"bias{d}", bias)
        self.reset_parameters()

    @property
    def output_size(self) -> int:
        """The channels of the output: both directions' when concatenated."""
        return self.units * (2 if self.bidirectional and self.merge_mode == "concat" else 1)

    def bias_shape(self) -> tuple[int, ...]:
        return (self.gates * self.units,)

    def biases(self, bias: torch.Tensor) -> list[torch.Tensor]:
        """The (input, recurrent) biases the kernel takes, from the module's."""
        return [bias, torch.zeros_like(bias)]

    def reset_parameters(self) -> None:
        for d in self.directions:
            nn.init.xavier_uniform_(getattr(self, f"weight_ih{d}"))
            nn.init.orthogonal_(getattr(self, f"weight_hh{d}"))
            bias = getattr(self, f"bias{d}")
            if bias is not None:
                nn.init.zeros_(bias)

    def flat_weights(self) -> list[torch.Tensor]:
        weights: list[torch.Tensor] = []
        for d in self.directions:
            weights += [getattr(self, f"weight_ih{d}"), getattr(self, f"weight_hh{d}")]
            if self.use_bias:
                weights += self.biases(getattr(self, f"bias{d}"))
        return weights

    def run(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(every step's output (N, T, directions * units), the last states (directions, N,
        units))."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = x.new_zeros(len(self.directions), x.shape[0], self.units)
        y, h = self.run(x, h0)
        if not self.return_sequences:  # the backward direction's last step is step 0
            y = h.transpose(0, 1).flatten(1)
        if not self.bidirectional or self.merge_mode == "concat":
            return y
        both = y.unflatten(-1, (2, self.units))
        if self.merge_mode == "sum":
            return both.sum(-2)
        if self.merge_mode == "mul":
            return both.prod(-2)
        return both.mean(-2)


class KerasLSTM(KerasRecurrent):
    """Keras' LSTM (tanh, sigmoid gates): gates i, f, g, o as nn.LSTM (Keras' i, f, c, o)."""

    gates = 4

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for d in self.directions:
            bias = getattr(self, f"bias{d}")
            if bias is not None:  # Keras' unit_forget_bias
                nn.init.ones_(bias[self.units : 2 * self.units])

    def run(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, h, _ = torch.lstm(
            x,
            (h0, h0),
            self.flat_weights(),
            self.use_bias,
            1,
            0.0,
            self.training,
            self.bidirectional,
            True,
        )
        return y, h


class KerasGRU(KerasRecurrent):
    """Keras' GRU with reset_after (tanh, sigmoid gates): gates r, z, n as nn.GRU (Keras'
    z, r, h); the bias (2, 3 * units) holds the input bias, then the recurrent one."""

    gates = 3

    def bias_shape(self) -> tuple[int, ...]:
        return (2, self.gates * self.units)

    def biases(self, bias: torch.Tensor) -> list[torch.Tensor]:
        return [bias[0], bias[1]]

    def run(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        args = (self.use_bias, 1, 0.0, self.training, self.bidirectional, True)
        y, h = torch.gru(x, h0, self.flat_weights(), *args)
        return y, h


class KerasSimpleRNN(KerasRecurrent):
    """Keras' SimpleRNN, tanh or relu (nn.RNN's nonlinearity)."""

    def __init__(self, *args, activation: str = "tanh", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.activation = activation

    def run(self, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kernel = torch.rnn_relu if self.activation == "relu" else torch.rnn_tanh
        args = (self.use_bias, 1, 0.0, self.training, self.bidirectional, True)
        y, h = kernel(x, h0, self.flat_weights(), *args)
        return y, h
