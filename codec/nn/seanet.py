"""SEANet encoder and decoder (as in SoundStream and EnCodec), built from streamable convs.

Encoder: (b, channels, t) -> (b, dimension, ceil(t / hop)); decoder: (b, dimension, f) ->
(b, channels, f * hop), hop = prod(ratios). The encoder downsamples by the ratios in reverse
order ([8, 5, 4, 2] -> 2, 4, 5, 8), doubling the filters at each step; the decoder mirrors it.
The layer list and state-dict keys follow EnCodec's SEANet (`model.N...`). Fast CPU inference:
`codec.nn.inference.for_cpu_inference`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from codec.nn.activations import make_activation
from codec.nn.conv import LSTM, Conv1d, ConvTranspose1d, pad_mode_of


class ResidualUnit(nn.Module):
    """act -> dilated conv (dim -> dim / compress) -> act -> 1x1 conv (-> dim), plus a skip."""

    def __init__(
        self,
        dim: int,
        kernel_size: int,
        dilation: int,
        compress: int,
        true_skip: bool,
        activation: str,
        **conv,
    ):
        super().__init__()
        hidden = dim // compress
        self.block = nn.Sequential(
            make_activation(activation, dim),
            Conv1d(dim, hidden, kernel_size, dilation=dilation, **conv),
            make_activation(activation, hidden, inplace=True),
            Conv1d(hidden, dim, 1, **conv),
        )
        self.shortcut = nn.Identity() if true_skip else Conv1d(dim, dim, 1, **conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, dim, t) -> (b, dim, t)."""
        return self.shortcut(x) + self.block(x)


class SEANet(nn.Module):
    """What the encoder and decoder share: options, residual units, `model` (the layers)."""

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        ratios: list[int] = (8, 5, 4, 2),
        n_residual_layers: int = 1,
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        compress: int = 2,
        lstm: int = 2,
        causal: bool = False,
        activation: str = "elu",
        norm: str = "weight_norm",
        pad_mode: str = "reflect",
        true_skip: bool = True,
    ):
        super().__init__()
        self.channels, self.dimension, self.ratios = channels, dimension, list(ratios)
        self.hop_length = math.prod(self.ratios)
        self.causal, self.pad_mode = causal, pad_mode_of(pad_mode)
        self._conv = dict(causal=causal, norm=norm, pad_mode=pad_mode)
        self._unit = dict(
            kernel_size=residual_kernel_size,
            compress=compress,
            true_skip=true_skip,
            activation=activation,
            **self._conv,
        )
        self._residual = [dilation_base**j for j in range(n_residual_layers)]
        self.activation = activation
        self.kernel_size, self.last_kernel_size, self.lstm_layers = (
            kernel_size,
            last_kernel_size,
            lstm,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _units(self, dim: int) -> list[nn.Module]:
        return [ResidualUnit(dim, dilation=d, **self._unit) for d in self._residual]


class SEANetEncoder(SEANet):
    """(b, channels, t) -> (b, dimension, ceil(t / hop_length))."""

    def __init__(self, **kw):
        super().__init__(**kw)
        nf = kw.get("n_filters", 32)
        mult = 1
        layers: list[nn.Module] = [Conv1d(self.channels, nf, self.kernel_size, **self._conv)]
        for ratio in reversed(self.ratios):
            layers += self._units(mult * nf)
            layers += [
                make_activation(self.activation, mult * nf, inplace=bool(self._residual)),
                Conv1d(mult * nf, 2 * mult * nf, 2 * ratio, stride=ratio, **self._conv),
            ]
            mult *= 2
        if self.lstm_layers:
            layers.append(LSTM(mult * nf, self.lstm_layers))
        layers += [
            make_activation(self.activation, mult * nf, inplace=True),
            Conv1d(mult * nf, self.dimension, self.last_kernel_size, **self._conv),
        ]
        self.model = nn.Sequential(*layers)


class SEANetDecoder(SEANet):
    """(b, dimension, f) -> (b, channels, f * hop_length)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        nf = kw.get("n_filters", 32)
        mult = 2 ** len(self.ratios)
        conv_tr = dict(causal=self._conv["causal"], norm=self._conv["norm"])
        layers: list[nn.Module] = [
            Conv1d(self.dimension, mult * nf, self.kernel_size, **self._conv)
        ]
        if self.lstm_layers:
            layers.append(LSTM(mult * nf, self.lstm_layers))
        for ratio in self.ratios:
            layers += [
                make_activation(self.activation, mult * nf, inplace=True),
                ConvTranspose1d(mult * nf, mult * nf // 2, 2 * ratio, stride=ratio, **conv_tr),
            ]
            layers += self._units(mult * nf // 2)
            mult //= 2
        layers += [
            make_activation(self.activation, nf, inplace=bool(self._residual)),
            Conv1d(nf, self.channels, self.last_kernel_size, **self._conv),
        ]
        self.model = nn.Sequential(*layers)
