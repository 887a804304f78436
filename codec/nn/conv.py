"""Streamable 1-D convolutions, (b, c, t) in and out.

Padding follows one rule everywhere: a strided conv of stride s over t samples gives exactly
ceil(t / s) frames, and a transposed conv of stride s gives exactly frames * s samples.
Causal layers pad only on the left; non-causal ones split the padding, the larger half left.
Each conv's `pad_mode` is "reflect" or "zeros" ("constant" is an alias of "zeros"); reflection
zero-extends an input shorter than the padding first, as EnCodec does.

`norm`: "weight_norm" (a weight-norm parametrization, folded away for inference by
`fold_weight_norm`), "time_group_norm" (EnCodec 48 kHz: GroupNorm(1, c_out) over channels and
time after the conv; non-causal only) or "none".

Streaming API: `with streaming(module): y1 = module(x1); y2 = module(x2); ...` turns every
streamable layer inside `module` stateful for the duration of the block and clears the state
after it. Chunks must be whole multiples of the model's total stride. A causal conv keeps the
last `padding` input samples between calls; on the first chunk its left padding is zeros or the
reflection of that chunk, so with reflection a stream equals the offline output exactly once
the first chunk is longer than the padding at every layer. A causal transposed conv keeps its
overlapping tail.

The fast CPU inference path (time-major layout, fused kernels) is a separate conversion:
`codec.nn.inference.for_cpu_inference`.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations, parametrize

NORMS = ("weight_norm", "time_group_norm", "none")
PAD_MODES = {"reflect": "reflect", "zeros": "zeros", "constant": "zeros"}


def _variance_preserving_(conv: nn.Module, fan_in: float) -> nn.Module:
    """Weights ~ N(0, 1 / fan_in), bias 0, so a layer keeps the scale of its input and of the
    gradient flowing back. PyTorch's default (variance 1 / (3 fan_in)) shrinks both about 1.7x per
    layer: through a SEANet encoder and decoder the encoder's gradient ends up ~1e6 times smaller
    than the decoder's and it barely learns, which lets the quantizer's commitment loss collapse
    the latents onto a few codes."""
    with torch.no_grad():
        conv.weight.normal_(0.0, fan_in**-0.5)
        if conv.bias is not None:
            conv.bias.zero_()
    return conv


def _check_norm(norm: str, causal: bool) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if norm == "time_group_norm" and causal:
        raise ValueError(
            "norm time_group_norm normalises over the whole signal: it cannot be causal"
        )


def _weight_normed(conv: nn.Module, norm: str) -> nn.Module:
    return parametrizations.weight_norm(conv) if norm == "weight_norm" else conv


def _group_norm(norm: str, channels: int) -> nn.GroupNorm | None:
    return nn.GroupNorm(1, channels) if norm == "time_group_norm" else None


def pad_mode_of(name: str) -> str:
    """The canonical padding mode, "reflect" or "zeros", of a configured name."""
    if name not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {tuple(PAD_MODES)}, got {name!r}")
    return PAD_MODES[name]


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Replace every weight-norm parametrization in `module` by the plain weight it computes
    (same outputs, no per-call normalisation), a Parameter as an unnormed layer's is."""
    for child in module.modules():
        if parametrize.is_parametrized(child, "weight"):
            parametrize.remove_parametrizations(child, "weight", leave_parametrized=True)
            if "weight" in child._buffers:  # what removal leaves when nothing required grad
                weight = child._buffers.pop("weight")
                child.weight = nn.Parameter(weight, requires_grad=False)
    return module


def pad1d(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """F.pad of the last axis (any leading shape) by reflection or zeros; reflection also works
    on inputs shorter than the padding (zero-extended first, as EnCodec does)."""
    if pad_mode_of(mode) == "zeros":
        return F.pad(x, (left, right))
    extra = (0, 0) * (x.ndim - 3)  # F.pad reflects as many axes as it is given pairs
    shortfall = max(left, right) - x.shape[-1] + 1
    if shortfall > 0:
        x = F.pad(x, (0, shortfall))
        out = F.pad(x, (left, right, *extra), mode="reflect")
        return out[..., : out.shape[-1] - shortfall]
    return F.pad(x, (left, right, *extra), mode="reflect")


FEW_FRAMES = 8  # a streaming chunk of fewer output frames runs as products of the taps


def _few_frames_conv(x: torch.Tensor, conv: nn.Conv1d, dilation: int) -> torch.Tensor:
    """A stride-1 conv without padding on a short input, (b, c_in, t) -> (b, c_out,
    t - (k - 1) * dilation), as products of its taps: one matrix product over the gathered taps
    (one group), or one product per tap (depthwise). For a few frames, as when streaming frame
    by frame, this is several times faster than the convolution kernels, whose set-up
    dominates there."""
    weight, bias = conv.weight, conv.bias
    k = weight.shape[-1]
    n = x.shape[-1] - (k - 1) * dilation
    taps = [x[..., j * dilation : j * dilation + n] for j in range(k)]
    if conv.groups == 1:
        gathered = torch.stack(taps, 2).flatten(1, 2)  # (b, c_in * k, n), c_in major
        y = torch.matmul(weight.flatten(1), gathered)
    else:  # depthwise
        y = taps[0] * weight[:, 0, 0, None]
        for j in range(1, k):
            y = y + taps[j] * weight[:, 0, j, None]
    return y if bias is None else y + bias[:, None]


ENDED = "ended"  # the streaming state of a conv whose stream ended on a partial chunk


class StreamingModule(nn.Module):
    """A layer that can keep state between calls while `streaming` is on."""

    def __init__(self):
        super().__init__()
        self._streaming = False
        self._state = None


@contextlib.contextmanager
def streaming(module: nn.Module):
    layers = [m for m in module.modules() if isinstance(m, StreamingModule)]
    for layer in layers:
        layer._streaming, layer._state = True, None
    try:
        yield module
    finally:
        for layer in layers:
            layer._streaming, layer._state = False, None


class Conv1d(StreamingModule):
    """(b, c_in, t) -> (b, c_out, ceil(t / stride)), causal or centred padding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        causal: bool = False,
        norm: str = "weight_norm",
        pad_mode: str = "reflect",
    ):
        super().__init__()
        _check_norm(norm, causal)
        conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )
        _variance_preserving_(conv, in_channels // groups * kernel_size)
        self.conv = _weight_normed(conv, norm)
        self.norm = _group_norm(norm, out_channels)
        self.causal, self.stride, self.pad_mode = causal, stride, pad_mode_of(pad_mode)
        self.kernel_size, self.dilation, self.groups = kernel_size, dilation, groups
        self.effective_kernel = (kernel_size - 1) * dilation + 1
        self.padding = self.effective_kernel - stride

    def _padding_for(self, length: int) -> tuple[int, int]:
        """(left, right) padding that gives ceil(length / stride) frames."""
        frames = math.ceil(length / self.stride)
        extra = max(0, (frames - 1) * self.stride + self.effective_kernel - self.padding - length)
        if self.causal:
            return self.padding, extra
        return self.padding - self.padding // 2, self.padding // 2 + extra

    def _stream_layout(self, length: int) -> tuple[bool, int, int]:
        """Streaming, a chunk of `length` samples: (join the kept history before it?, left and
        right padding). The first chunk pads its own left side; a chunk that is not a multiple
        of the stride is the stream's last and is padded on the right as the offline signal's
        end is, so a stream ending on a partial chunk still gives the offline frames."""
        if self._state is ENDED:
            raise ValueError(
                "this stream has ended: its last chunk was not a multiple of the stride "
                f"{self.stride}"
            )
        if self._state is None:
            return False, *self._padding_for(length)
        frames = math.ceil(length / self.stride)
        needed = (frames - 1) * self.stride + self.effective_kernel
        return True, 0, needed - self.padding - length

    def _keep_history(self, joined: torch.Tensor, length: int) -> None:
        ended = length % self.stride
        self._state = ENDED if ended else joined[..., joined.shape[-1] - self.padding :]

    def _with_history(self, x: torch.Tensor) -> torch.Tensor:
        """Streaming: x after the kept last `padding` samples (on the first chunk, after its
        causal padding), plus the right padding of a stream's last partial chunk; keeps the
        new last samples."""
        if not self.padding and not x.shape[-1] % self.stride:
            return x
        join, left, right = self._stream_layout(x.shape[-1])
        joined = torch.cat([self._state, x], -1) if join else pad1d(x, left, 0, self.pad_mode)
        self._keep_history(joined, x.shape[-1])
        if not join and right:  # the whole stream in one partial chunk: exactly offline
            return pad1d(x, left, right, self.pad_mode)
        return pad1d(joined, 0, right, self.pad_mode) if right else joined

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._streaming and self.causal:
            x = self._with_history(x)
            depthwise = self.groups == self.conv.in_channels == self.conv.out_channels
            few = x.shape[-1] - self.effective_kernel < FEW_FRAMES and self.stride == 1
            if few and (self.groups == 1 or depthwise) and not torch.is_grad_enabled():
                y = _few_frames_conv(x, self.conv, self.dilation)
            else:
                y = self.conv(x)
        else:
            left, right = self._padding_for(x.shape[-1])
            if self.pad_mode == "zeros" and right <= left:
                # zero padding inside the conv (symmetric, surplus outputs dropped) saves
                # copying x
                conv = self.conv
                y = F.conv1d(
                    x, conv.weight, conv.bias, conv.stride, left, conv.dilation, conv.groups
                )
                y = y[..., : math.ceil(x.shape[-1] / self.stride)]
            else:
                y = self.conv(pad1d(x, left, right, self.pad_mode))
        return y if self.norm is None else self.norm(y)


class ConvTranspose1d(StreamingModule):
    """(b, c_in, f) -> (b, c_out, f * stride); causal layers trim all overlap on the right.

    The bias is a parameter of its own, added once after trimming (or, with time_group_norm,
    before the norm, which EnCodec computes over the untrimmed output)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        causal: bool = False,
        norm: str = "weight_norm",
    ):
        super().__init__()
        _check_norm(norm, causal)
        conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, bias=False)
        _variance_preserving_(conv, in_channels * kernel_size / stride)  # taps per output sample
        self.convtr = _weight_normed(conv, norm)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.norm = _group_norm(norm, out_channels)
        self.causal, self.stride = causal, stride
        self.overlap = kernel_size - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convtr(x)  # (b, c, (f - 1) * s + k)
        n = x.shape[-1] * self.stride
        left = 0 if self.causal else self.overlap - self.overlap // 2
        if self.norm is not None:
            return self.norm(y + self.bias[:, None])[..., left : left + n]
        bias = self.bias[:, None]
        if self._streaming and self.causal:
            if self._state is not None:
                tail = self._state
                y = torch.cat([y[..., : tail.shape[-1]] + tail, y[..., tail.shape[-1] :]], -1)
            self._state = y[..., n:]
        return y[..., left : left + n] + bias


class LSTM(StreamingModule):
    """Bottleneck LSTM with a skip connection: (b, c, t) -> (b, c, t); carries (h, c) while
    streaming."""

    def __init__(self, channels: int, layers: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(channels, channels, layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.transpose(1, 2)
        if self._streaming:
            out, self._state = self.lstm(seq, self._state)
        else:
            out = self.lstm(seq)[0]
        return (out + seq).transpose(1, 2)
