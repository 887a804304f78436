"""Streamable 1-D convolutions.

Padding follows one rule everywhere: a strided conv of stride s over t samples gives exactly
ceil(t / s) frames, and a transposed conv of stride s gives exactly frames * s samples.
Causal layers pad (with zeros) only on the left, so in streaming mode each keeps the last
`padding` input samples (or the transposed conv's overlapping tail) between calls and feeding a
signal in chunks gives the offline output.

Streaming API: `with streaming(module): y1 = module(x1); y2 = module(x2); ...` turns every
streamable layer inside `module` stateful for the duration of the block and clears the state
after it; `reset_streaming(module)` clears it by hand. Chunks must be whole multiples of the
model's total stride.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations, parametrize

NORMS = ("weight_norm", "none")


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


def _normed(conv: nn.Module, norm: str) -> nn.Module:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return parametrizations.weight_norm(conv) if norm == "weight_norm" else conv


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Replace every weight-norm parametrization in `module` by the plain weight it computes
    (same outputs, no per-call normalisation)."""
    for child in module.modules():
        if parametrize.is_parametrized(child, "weight"):
            parametrize.remove_parametrizations(child, "weight", leave_parametrized=True)
    return module


def pad1d(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """F.pad that also reflects inputs shorter than the padding (by zero-padding them first)."""
    if mode == "reflect":
        shortfall = max(left, right) - x.shape[-1] + 1
        if shortfall > 0:
            x = F.pad(x, (0, shortfall))
            out = F.pad(x, (left, right), mode="reflect")
            return out[..., : out.shape[-1] - shortfall]
        return F.pad(x, (left, right), mode="reflect")
    return F.pad(x, (left, right))


class StreamingModule(nn.Module):
    """A layer that can keep state between calls while `streaming` is on."""

    def __init__(self):
        super().__init__()
        self._streaming = False
        self._state = None

    def reset_state(self) -> None:
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


def reset_streaming(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, StreamingModule):
            layer.reset_state()


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
        self.conv = _normed(conv, norm)
        self.causal, self.stride = causal, stride
        self.pad_mode = "constant" if causal else pad_mode
        self.effective_kernel = (kernel_size - 1) * dilation + 1
        self.padding = self.effective_kernel - stride

    def _extra_padding(self, length: int) -> int:
        frames = math.ceil(length / self.stride)
        return max(0, (frames - 1) * self.stride + self.effective_kernel - self.padding - length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._streaming and self.causal:
            if x.shape[-1] % self.stride:
                raise ValueError(
                    f"streaming chunk of {x.shape[-1]} samples is not a multiple "
                    f"of the stride {self.stride}"
                )
            state = self._state
            if state is None:
                state = x.new_zeros(*x.shape[:-1], self.padding)
            full = torch.cat([state, x], -1)
            self._state = full[..., full.shape[-1] - self.padding :]
            return self.conv(full)
        extra = self._extra_padding(x.shape[-1])
        left = self.padding if self.causal else self.padding - self.padding // 2
        right = extra if self.causal else self.padding // 2 + extra
        if self.pad_mode == "constant" and right <= left:
            # zero padding inside the conv (symmetric, surplus outputs dropped) saves copying x
            conv = self.conv
            y = F.conv1d(x, conv.weight, conv.bias, conv.stride, left, conv.dilation, conv.groups)
            return y[..., : math.ceil(x.shape[-1] / self.stride)]
        return self.conv(pad1d(x, left, right, self.pad_mode))


class ConvTranspose1d(StreamingModule):
    """(b, c_in, f) -> (b, c_out, f * stride); causal layers trim all overlap on the right."""

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
        conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, bias=False)
        _variance_preserving_(conv, in_channels * kernel_size / stride)  # taps per output sample
        self.convtr = _normed(conv, norm)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.causal, self.stride = causal, stride
        self.overlap = kernel_size - stride

    SHORT_INPUT = 16  # frames; below this a matmul + overlap-add beats the conv kernel

    def _transposed(self, x: torch.Tensor) -> torch.Tensor:
        """(b, c_in, f) -> (b, c_out, (f - 1) * s + k) without bias. For a few frames (streaming)
        one matmul on a view of the weight plus an overlap-add (F.fold) avoids the per-call
        weight re-layout of the transposed-conv kernel, which costs more than the product."""
        if x.shape[-1] > self.SHORT_INPUT:
            return self.convtr(x)
        weight = self.convtr.weight  # (c_in, c_out, k)
        c_in, c_out, k = weight.shape
        frames = x.shape[-1]
        cols = torch.matmul(x.transpose(1, 2), weight.reshape(c_in, c_out * k))  # (b, f, o*k)
        length = (frames - 1) * self.stride + k
        y = F.fold(cols.transpose(1, 2), (1, length), (1, k), stride=(1, self.stride))
        return y[:, :, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._transposed(x)  # (b, c, (f - 1) * s + k), bias added once, below
        bias = self.bias[:, None]
        n = x.shape[-1] * self.stride
        if self._streaming and self.causal:
            if self._state is not None:
                tail = self._state
                y = torch.cat([y[..., : tail.shape[-1]] + tail, y[..., tail.shape[-1] :]], -1)
            self._state = y[..., n:]
            return y[..., :n] + bias
        if self.causal:
            return y[..., :n] + bias
        left = self.overlap - self.overlap // 2
        return y[..., left : left + n] + bias


class LSTM(StreamingModule):
    """Bottleneck LSTM with a skip connection: (b, c, t) -> (b, c, t); carries (h, c) while
    streaming."""

    STEP_LIMIT = 8  # below this many steps, plain math beats the oneDNN kernel's set-up cost

    def __init__(self, channels: int, layers: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(channels, channels, layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.transpose(1, 2)
        if not self._streaming:
            return (self.lstm(seq)[0] + seq).transpose(1, 2)
        if seq.shape[1] <= self.STEP_LIMIT and not torch.is_grad_enabled():
            out, self._state = self._steps(seq, self._state)
        else:
            out, self._state = self.lstm(seq, self._state)
        return (out + seq).transpose(1, 2)

    def _steps(self, seq: torch.Tensor, state):
        """The LSTM recurrence step by step: seq (b, t, c) -> (b, t, c), (h, c) each
        (layers, b, c)."""
        lstm, b = self.lstm, seq.shape[0]
        if state is None:
            zeros = seq.new_zeros(lstm.num_layers, b, lstm.hidden_size)
            state = (zeros, zeros)
        hs, cs = list(state[0].unbind(0)), list(state[1].unbind(0))
        outputs = []
        for t in range(seq.shape[1]):
            inp = seq[:, t]
            for layer in range(lstm.num_layers):
                gates = F.linear(
                    inp, getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"bias_ih_l{layer}")
                )
                gates = gates + F.linear(
                    hs[layer],
                    getattr(lstm, f"weight_hh_l{layer}"),
                    getattr(lstm, f"bias_hh_l{layer}"),
                )
                i, f, g, o = gates.chunk(4, dim=-1)
                cs[layer] = torch.sigmoid(f) * cs[layer] + torch.sigmoid(i) * torch.tanh(g)
                hs[layer] = torch.sigmoid(o) * torch.tanh(cs[layer])
                inp = hs[layer]
            outputs.append(inp)
        return torch.stack(outputs, 1), (torch.stack(hs), torch.stack(cs))
