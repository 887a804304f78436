"""Streaming decode of a causal SEANet decoder in a few small matrix products per chunk.

    stream = SEANetDecoderStream.of(decoder)          # None for a decoder it does not support
    wav = torch.cat([stream(latents[:, k : k + 1]) for k in range(f)], -1)

Frame by frame, the layers' general streaming path (codec.nn.conv, codec.nn.inference) spends
most of its time in PyTorch's per-call overhead: some 700 calls per 20 ms frame, each on a few
hundred numbers. This stream compiles the decoder's layer list once into steps on contiguous
(b, t, c) rows, each a handful of calls: a causal conv joins its kept history and runs one
matrix product over the gathered taps, a transposed conv of kernel 2 x stride runs its two
polyphase products against the previous input row, the LSTM steps `torch.lstm_cell`, and a
residual unit adds its last product into the shortcut's. The output equals the general
streaming path within float rounding, including the first chunk, whose convs pad themselves by
reflection as a causal conv's first chunk does.

The weights are read when the stream is made: a stream belongs to one `streaming()` block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codec.nn.conv import LSTM, Conv1d, ConvTranspose1d, pad1d
from codec.nn.seanet import ResidualUnit, SEANetDecoder


class _CausalConv:
    """A causal stride-1 Conv1d on rows (b, n, i) -> (b, n, o), keeping the last
    (k - 1) * dilation input rows."""

    def __init__(self, conv: Conv1d):
        weight = conv.conv.weight.detach().float()  # (o, i, k)
        self.matrix = weight.reshape(len(weight), -1).t().contiguous()  # (i k, o)
        bias = conv.conv.bias
        self.bias = bias.detach().float() if bias is not None else weight.new_zeros(len(weight))
        self.kernel, self.dilation = conv.kernel_size, conv.dilation
        self.history = conv.padding  # (k - 1) * dilation for a stride-1 conv
        self.pad_mode = conv.pad_mode
        self.kept: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _ = x.shape
        if not self.history:
            joined = x
        elif self.kept is None:  # the first chunk pads itself, as Conv1d's first chunk does
            padded = pad1d(x.transpose(1, 2), self.history, 0, self.pad_mode)
            joined = padded.transpose(1, 2).contiguous()
        else:
            joined = torch.cat([self.kept, x], 1)
        if self.history:
            self.kept = joined[:, n:]
        if self.kernel == 1:
            cols = joined.reshape(b * n, -1)
        else:
            taps = joined.unfold(1, self.history + 1, 1)  # (b, n, i, (k - 1) d + 1)
            if self.dilation > 1:
                taps = taps[..., :: self.dilation]
            cols = taps.reshape(b * n, -1)
        if out is None:
            return torch.addmm(self.bias, cols, self.matrix).view(b, n, -1)
        return out.view(b * n, -1).addmm_(cols, self.matrix).view(b, n, -1)


class _CausalConvTranspose:
    """A causal ConvTranspose1d of kernel 2 x stride on rows (b, n, i) -> (b, n * s, o):
    output block j (s rows) = x[j] @ first half + x[j - 1] @ second half of the kernel."""

    def __init__(self, conv: ConvTranspose1d):
        weight = conv.convtr.weight.detach().float()  # (i, o, 2s)
        s = self.stride = conv.stride
        self.first, self.second = (
            half.permute(0, 2, 1).reshape(len(weight), -1).contiguous()  # (i, s o)
            for half in (weight[..., :s], weight[..., s:])
        )
        self.bias = conv.bias.detach().float().repeat(s)  # (s o), sample-major like the blocks
        self.previous: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, n, i = x.shape
        rows = x.reshape(b * n, i)
        y = torch.addmm(self.bias, rows, self.first)  # (b n, s o)
        if self.previous is None:
            self.previous = x.new_zeros(b, 1, i)
        if n == 1:
            before = self.previous.view(b, i)
        else:
            before = torch.cat([self.previous, x[:, :-1]], 1).reshape(b * n, i)
        y.addmm_(before, self.second)
        self.previous = x[:, -1:].clone()
        return y.view(b, n * self.stride, -1)


class _LSTMStep:
    """The bottleneck LSTM plus its skip, one `torch.lstm_cell` per step and layer."""

    def __init__(self, lstm: LSTM):
        cell = lstm.lstm
        self.layers = [
            tuple(
                getattr(cell, f"{name}_l{k}").detach().float()
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            )
            for k in range(cell.num_layers)
        ]
        self.state: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        if self.state is None:
            zeros = x.new_zeros(b, c)
            self.state = [(zeros, zeros)] * len(self.layers)
        inputs = x
        for k, weights in enumerate(self.layers):
            outputs = x.new_empty(b, n, c)
            h, cell = self.state[k]
            for step in range(n):
                h, cell = torch.lstm_cell(inputs[:, step], (h, cell), *weights)
                outputs[:, step] = h
            self.state[k] = (h, cell)
            inputs = outputs
        return inputs.add_(x)


class _ELU:
    def __init__(self, elu: nn.ELU):
        self.alpha = elu.alpha

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.elu_(x, self.alpha)  # every step's input is the previous step's fresh output


class _ResidualUnit:
    """ELU -> causal conv -> ELU -> 1x1 conv, plus the 1x1 shortcut (or x itself); the last
    product adds into the shortcut's output, which starts with both biases."""

    def __init__(self, unit: ResidualUnit):
        first, conv, second, last = unit.block
        self.first, self.conv, self.second = _ELU(first), _CausalConv(conv), _ELU(second)
        self.last = _CausalConv(last)
        identity = isinstance(unit.shortcut, nn.Identity)
        self.shortcut = None if identity else _CausalConv(unit.shortcut)
        if self.shortcut is not None:
            self.shortcut.bias = self.shortcut.bias + self.last.bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shortcut(x) if self.shortcut is not None else x + self.last.bias
        h = self.second(self.conv(self.first(x)))
        return self.last(h, out=out)


def _supported_conv(conv: Conv1d) -> bool:
    return conv.causal and conv.stride == 1 and conv.groups == 1 and conv.norm is None


def _supported_unit(unit: ResidualUnit) -> bool:
    first, conv, second, last = unit.block
    shortcut = unit.shortcut
    return (
        isinstance(first, nn.ELU)
        and isinstance(second, nn.ELU)
        and all(isinstance(c, Conv1d) and _supported_conv(c) for c in (conv, last))
        and last.kernel_size == 1
        and (
            isinstance(shortcut, nn.Identity)
            or (
                isinstance(shortcut, Conv1d)
                and _supported_conv(shortcut)
                and shortcut.kernel_size == 1
            )
        )
    )


def _step_for(layer: nn.Module):
    """The stream step for one layer of a SEANet decoder, or None if it has none."""
    if isinstance(layer, Conv1d) and _supported_conv(layer):
        return _CausalConv(layer)
    if isinstance(layer, ConvTranspose1d):
        kernel = layer.convtr.kernel_size[0]
        polyphase = layer.causal and layer.norm is None and kernel == 2 * layer.stride
        return _CausalConvTranspose(layer) if polyphase else None
    if isinstance(layer, LSTM):
        return _LSTMStep(layer)
    if type(layer) is nn.ELU:
        return _ELU(layer)
    if isinstance(layer, ResidualUnit) and _supported_unit(layer):
        return _ResidualUnit(layer)
    return None


class SEANetDecoderStream:
    """A causal SEANet decoder streamed chunk by chunk: latents (b, f, dimension) rows ->
    wav (b, channels, f * hop), float32 on the CPU. Build with `of`."""

    def __init__(self, steps: list):
        self.steps = steps

    @classmethod
    def of(cls, decoder: nn.Module) -> SEANetDecoderStream | None:
        """The stream of `decoder`, or None unless it is a causal SEANetDecoder on the CPU whose
        every layer has a step here (float32 weights or ones that upcast exactly)."""
        if not isinstance(decoder, SEANetDecoder) or not decoder.causal:
            return None
        if any(p.device.type != "cpu" for p in decoder.parameters()):
            return None
        steps = [_step_for(layer) for layer in decoder.model]
        return None if any(step is None for step in steps) else cls(steps)

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        x = latents.float().contiguous()
        for step in self.steps:
            x = step(x)
        return x.transpose(1, 2)
