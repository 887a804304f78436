"""DAC's encoder and decoder (Descript Audio Codec, Kumar et al. 2023), built from our convs.

Encoder: (b, channels, t) -> (b, dimension, ceil(t / hop)), the input right-padded with zeros
to a multiple of the hop first (DAC's preprocess). Decoder: (b, dimension, f) ->
(b, channels, output_length(f)). hop = prod(rates).

    encoder: conv k7 -> [3 residual units, Snake, strided conv k=2s] per rate (channels
             doubling) -> Snake -> conv k3 to the latent dimension
    decoder: conv k7 -> [Snake, transposed conv k=2s, 3 residual units] per rate (channels
             halving) -> Snake -> conv k7 -> tanh
    residual unit: Snake -> conv k7 dilation 1/3/9 -> Snake -> conv 1x1, plus the input

Every conv is weight-normed (`norm="none"`: plain weights, what folding the weight norm of a
loaded model leaves) and zero-padded "same" (the strided ones by ceil(s/2) each side).
A transposed conv of stride s trims ceil(s/2) samples from both ends: for odd s that leaves
s * f - 1 samples, so DAC 1.0's 16 and 24 kHz decoders (rates 8, 5, 4, 2) give 320 f - 8
samples. `output_padding=True` (later DAC versions) adds the missing sample, and the decoder
gives f * hop exactly. The module layout follows DAC's (`block.N`, `model.N`), with our conv
wrappers' own `conv.`/`convtr.` level inside.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from codec.nn.activations import Snake
from codec.nn.conv import Conv1d, ConvTranspose1d

DILATIONS = (1, 3, 9)


def _conv(c_in: int, c_out: int, kernel_size: int, norm: str, **kw) -> Conv1d:
    return Conv1d(c_in, c_out, kernel_size, norm=norm, pad_mode="zeros", **kw)


class DACResidualUnit(nn.Module):
    """Snake -> conv k7 (dilated) -> Snake -> conv 1x1, plus the input: (b, c, t) -> (b, c, t)."""

    def __init__(self, channels: int, dilation: int, norm: str = "weight_norm"):
        super().__init__()
        self.block = nn.Sequential(
            Snake(channels),
            _conv(channels, channels, 7, norm, dilation=dilation),
            Snake(channels),
            _conv(channels, channels, 1, norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        crop = (x.shape[-1] - y.shape[-1]) // 2  # 0 with "same" padding; kept as DAC has it
        if crop > 0:
            x = x[..., crop:-crop]
        return x + y


class DACTransposedConv(ConvTranspose1d):
    """Transposed conv of kernel 2s, trimming ceil(s/2) samples from each end: (b, c_in, f) ->
    (b, c_out, s * f), or s * f - 1 for odd s without `output_padding` (DAC 1.0)."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, output_padding: bool, norm: str = "weight_norm"
    ):
        super().__init__(c_in, c_out, 2 * stride, stride, causal=False, norm=norm)
        self.short = 0 if output_padding else stride % 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y[..., : y.shape[-1] - self.short] if self.short else y

    def output_length(self, frames: int) -> int:
        return frames * self.stride - self.short


class DACEncoderBlock(nn.Module):
    """3 residual units, Snake, strided conv k=2s: (b, c, t) -> (b, 2c, t / s)."""

    def __init__(self, channels: int, stride: int, norm: str = "weight_norm"):
        super().__init__()
        units = [DACResidualUnit(channels, d, norm) for d in DILATIONS]
        down = _conv(channels, 2 * channels, 2 * stride, norm, stride=stride)
        self.block = nn.Sequential(*units, Snake(channels), down)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DACDecoderBlock(nn.Module):
    """Snake, transposed conv k=2s, 3 residual units: (b, c_in, f) -> (b, c_out, ~s f)."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, output_padding: bool, norm: str = "weight_norm"
    ):
        super().__init__()
        up = DACTransposedConv(c_in, c_out, stride, output_padding, norm)
        units = [DACResidualUnit(c_out, d, norm) for d in DILATIONS]
        self.block = nn.Sequential(Snake(c_in), up, *units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DACEncoder(nn.Module):
    """(b, channels, t) -> (b, dimension, ceil(t / hop_length)); `n_filters` channels after the
    first conv, doubling at each rate."""

    causal, pad_mode = False, "zeros"

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 1024,
        n_filters: int = 64,
        rates: list[int] = (2, 4, 8, 8),
        norm: str = "weight_norm",
    ):
        super().__init__()
        self.channels, self.dimension, self.rates = channels, dimension, list(rates)
        self.hop_length = math.prod(self.rates)
        layers: list[nn.Module] = [_conv(channels, n_filters, 7, norm)]
        width = n_filters
        for stride in self.rates:
            layers.append(DACEncoderBlock(width, stride, norm))
            width *= 2
        layers += [Snake(width), _conv(width, dimension, 3, norm)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(F.pad(x, (0, -x.shape[-1] % self.hop_length)))


class DACDecoder(nn.Module):
    """(b, dimension, f) -> (b, channels, output_length(f)) in [-1, 1]; `n_filters` channels
    after the first conv, halving at each rate (DAC's decoder_dim)."""

    causal, pad_mode = False, "zeros"

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 1024,
        n_filters: int = 1536,
        rates: list[int] = (8, 8, 4, 2),
        output_padding: bool = False,
        norm: str = "weight_norm",
    ):
        super().__init__()
        self.channels, self.dimension, self.rates = channels, dimension, list(rates)
        self.hop_length = math.prod(self.rates)
        layers: list[nn.Module] = [_conv(dimension, n_filters, 7, norm)]
        for i, stride in enumerate(self.rates):
            c_in, c_out = n_filters // 2**i, n_filters // 2 ** (i + 1)
            layers.append(DACDecoderBlock(c_in, c_out, stride, output_padding, norm))
        layers += [Snake(c_out), _conv(c_out, channels, 7, norm), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def output_length(self, frames: int) -> int:
        """Samples out for `frames` frames: frames * hop_length, less 1 per odd rate without
        output_padding, scaled by the rates after it (DAC 1.0, rates 8, 5, 4, 2: 320 f - 8)."""
        length = frames
        for block in self.model:
            if isinstance(block, DACDecoderBlock):
                length = block.block[1].output_length(length)
        return length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
