"""Streamable 1-D convolutions, (b, c, t) in and out.

Padding follows one rule everywhere: a strided conv of stride s over t samples gives exactly
ceil(t / s) frames, and a transposed conv of stride s gives exactly frames * s samples.
Causal layers pad only on the left; non-causal ones split the padding, the larger half left.
Each conv's `pad_mode` is "reflect" or "zeros" ("constant" is an alias of "zeros"); reflection
zero-extends an input shorter than the padding first, as EnCodec does.

The padding amounts are fixed numbers or arithmetic on the input's length, never Python
branches on it, so `torch.export` (and through it `torch.onnx.export`) traces one graph that
serves every length.

`norm`: "weight_norm" (a weight-norm parametrization, folded away for inference by
`fold_weight_norm`), "time_group_norm" (EnCodec 48 kHz: GroupNorm(1, c_out) over channels and
time after the conv; non-causal only) or "none".

Streaming (`codec.nn.streaming`): a causal conv's state is the last `padding` input samples
(zeros before the first chunk, which so equals the offline left padding with zeros); with
reflection, a flag per item marks a stream's first chunk, which is padded by its own
reflection, so a reflect-padded stream equals the offline output once the first chunk is longer
than the padding at every layer. Chunks must be whole multiples of the model's total stride; a
chunk that is not is the stream's last, padded on the right as the offline signal's end is. A
causal transposed conv keeps its overlapping tail; the LSTM its (h, c).

The fast CPU inference path (time-major layout, fused kernels) is a separate conversion:
`codec.nn.inference.for_cpu_inference`.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.symbolic_shapes import statically_known_true
from torch.nn.utils import parametrizations, parametrize

from codec.nn.export_ops import exportable_lstm
from codec.nn.streaming import State, StreamingModule

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


@torch.no_grad()
def set_weight(conv: nn.Module, weight: torch.Tensor) -> None:
    """Make a torch conv (plain or weight-normed) compute with `weight`: through its weight
    norm, the direction is `weight` and each output channel's gain its norm."""
    norms = getattr(conv, "parametrizations", None)
    if norms is None:
        conv.weight.copy_(weight)
        return
    gain, direction = norms.weight.original0, norms.weight.original1
    direction.copy_(weight)
    gain.copy_(weight.flatten(1).norm(dim=1).view_as(gain))


def pad1d(x: torch.Tensor, left: int, right, mode: str, reach=None) -> torch.Tensor:
    """x padded on its last axis (any leading shape) by reflection or zeros. Reflection works
    on inputs shorter than the padding too (as EnCodec: the input zero-extended to
    max(left, reach) + 1 samples first, the extension cut off after). `reach` (default
    `right`; may be arithmetic on x's length) is the right padding that defines that
    extension when more is padded than any output reads, which keeps `right` a fixed amount."""
    if pad_mode_of(mode) == "zeros":
        return F.pad(x, (left, right))
    return torch.cat(reflection_parts(x, left, right, reach), -1)


def reflection_parts(x: torch.Tensor, left: int, right, reach=None) -> list[torch.Tensor]:
    """[the `left` reflected samples before x, x, the `right` ones after it]: pad1d's
    reflection before it joins them (a caller may join them into memory laid out its way)."""
    reach = right if reach is None else reach
    return [_reflected_left(x, left), x, _reflected_right(x, right, left, reach)]


def _taps(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[..., index], zero where index is past x's end."""
    t = x.shape[-1]
    inside = index < t
    picked = x.index_select(-1, index.clamp(0, t - 1))
    return picked * inside.to(x.dtype)


def _reflected_left(x: torch.Tensor, left: int) -> torch.Tensor:
    """The `left` samples before x, x[left], ..., x[1] (zero past the end of a short x)."""
    if statically_known_true(left < x.shape[-1]):  # a fixed length that is long enough
        return x[..., 1 : left + 1].flip(-1)
    return _taps(x, torch.arange(left, 0, -1, device=x.device))


def _reflected_right(x: torch.Tensor, right, left: int, reach) -> torch.Tensor:
    """The `right` samples after x's end, reflected about its last sample; for x shorter than
    the padding, about the last sample of its zero extension to max(left, reach) + 1."""
    t = x.shape[-1]
    n = torch.sym_max(t, torch.sym_max(left, reach) + 1)  # length after zero extension
    position = torch.arange(right, device=x.device) + t
    source = torch.where(position < n, t, 2 * (n - 1) - position)  # t: in the zero extension
    return _taps(x, source)


SHORT_CHUNK_FRAMES = 8  # a streaming chunk of fewer output frames runs as products of the taps


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


@dataclasses.dataclass
class ConvState(State):
    """history (b, c_in, padding): the last input samples (zeros before any); first (b,) bool,
    reflect-padded convs only: the item's next chunk is its stream's first; ended: the last
    chunk was partial, so the stream is over (bookkeeping of eager streams, not a tensor)."""

    history: torch.Tensor
    first: torch.Tensor | None = None
    ended: bool = False

    @classmethod
    def fresh_like(cls, state: ConvState) -> ConvState:
        first = None if state.first is None else torch.ones_like(state.first)
        return cls(torch.zeros_like(state.history), first)


class Conv1d(StreamingModule[ConvState]):
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
        # causal: all padding on the left; else the larger half
        self.left_padding = self.padding if causal else self.padding - self.padding // 2

    def _padding_for(self, length: int) -> tuple[int, int]:
        """(left, right) padding that gives ceil(length / stride) frames."""
        return self.left_padding, self.padding - self.left_padding + (-length) % self.stride

    def init_streaming_state(self, batch_size: int) -> ConvState | None:
        if not self.causal or not self.padding:  # runs as offline: nothing to carry
            return None
        device = self._device()
        history = torch.zeros(batch_size, self.conv.in_channels, self.padding, device=device)
        first = None
        if self.pad_mode == "reflect":
            first = torch.ones(batch_size, dtype=torch.bool, device=device)
        return ConvState(history, first)

    def _with_history(self, x: torch.Tensor) -> torch.Tensor:
        """Streaming: x after the kept last `padding` samples (on a stream's first chunk, with
        reflection, after its own reflection), plus the right padding of a stream's last
        partial chunk; keeps the new last samples."""
        state = self.streaming_state(x.shape[0])
        if state.ended:
            raise ValueError(
                "this stream has ended: its last chunk was not a multiple of the stride "
                f"{self.stride}"
            )
        t, right = x.shape[-1], (-x.shape[-1]) % self.stride
        history = state.history.to(x.dtype)
        if state.first is not None:  # a first chunk is padded by its own reflection
            first = state.first[:, None, None]
            history = torch.where(first, _reflected_left(x, self.padding), history)
            state.first = torch.zeros_like(state.first)
        joined = torch.cat([history, x], -1)
        if not right:
            state.history = joined[..., t:]
            return joined
        state.ended = True  # a partial chunk: the end of the signal
        padded = pad1d(joined, 0, right, self.pad_mode)
        if state.first is not None:  # a whole stream in one chunk: padded as offline
            padded = torch.where(first, pad1d(x, self.padding, right, "reflect"), padded)
        return padded

    def _few_frames_apply(self, x: torch.Tensor) -> bool:
        """Whether a streaming chunk is short enough for `_few_frames_conv` (eager only: an
        exported graph keeps the conv, whose length is free)."""
        if torch.compiler.is_exporting() or torch.is_grad_enabled() or self.stride != 1:
            return False
        depthwise = self.groups == self.conv.in_channels == self.conv.out_channels
        few = x.shape[-1] - self.effective_kernel < SHORT_CHUNK_FRAMES
        return few and (self.groups == 1 or depthwise)

    def _few_frames(self, x: torch.Tensor) -> torch.Tensor:
        return _few_frames_conv(x, self.conv, self.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_streaming:
            x = self._with_history(x)
            y = self._few_frames(x) if self._few_frames_apply(x) else self.conv(x)
        else:
            # stride - 1 samples more than a multiple of the stride needs on the right: they
            # reach no output frame, and the amounts stay fixed whatever the length
            left, right = self.left_padding, self.padding - self.left_padding
            reach = right + (-x.shape[-1]) % self.stride  # what the last frame reads
            y = self.conv(pad1d(x, left, right + self.stride - 1, self.pad_mode, reach))
        return y if self.norm is None else self.norm(y)


@dataclasses.dataclass
class ConvTransposeState(State):
    """tail (b, c_out, overlap): the output samples that the next frames still add to."""

    tail: torch.Tensor


class ConvTranspose1d(StreamingModule[ConvTransposeState]):
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

    def init_streaming_state(self, batch_size: int) -> ConvTransposeState | None:
        if not self.causal or self.overlap <= 0:
            return None
        channels = self.convtr.out_channels
        return ConvTransposeState(
            torch.zeros(batch_size, channels, self.overlap, device=self._device())
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convtr(x)  # (b, c, (f - 1) * s + k)
        n = x.shape[-1] * self.stride
        left = 0 if self.causal else self.overlap - self.overlap // 2
        if self.norm is not None:
            return self.norm(y + self.bias[:, None])[..., left : left + n]
        if self.is_streaming:
            state = self.streaming_state(x.shape[0])
            head = y[..., : self.overlap] + state.tail.to(y.dtype)
            y = torch.cat([head, y[..., self.overlap :]], -1)
            state.tail = y[..., n:]
        return y[..., left : left + n] + self.bias[:, None]


@dataclasses.dataclass
class LSTMState(State):
    """h and c, each (b, layers, hidden)."""

    h: torch.Tensor
    c: torch.Tensor


class LSTM(StreamingModule[LSTMState]):
    """Bottleneck LSTM with a skip connection: (b, c, t) -> (b, c, t); carries (h, c) while
    streaming."""

    def __init__(self, channels: int, layers: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(channels, channels, layers, batch_first=True)

    def init_streaming_state(self, batch_size: int) -> LSTMState:
        shape = (batch_size, self.lstm.num_layers, self.lstm.hidden_size)
        zeros = torch.zeros(shape, device=self._device())
        return LSTMState(zeros, zeros.clone())

    def _run(self, seq: torch.Tensor, state):
        """nn.LSTM(seq, state); while exporting, one op per layer that keeps the length free."""
        if torch.compiler.is_exporting():
            return exportable_lstm(self.lstm, seq, state)
        return self.lstm(seq, state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.transpose(1, 2)
        if self.is_streaming:
            state = self.streaming_state(x.shape[0])
            carried = (state.h.transpose(0, 1), state.c.transpose(0, 1))
            carried = tuple(
                t.to(seq.dtype).clone(memory_format=torch.contiguous_format) for t in carried
            )
            out, (h, c) = self._run(seq, carried)
            state.h, state.c = h.transpose(0, 1), c.transpose(0, 1)
        else:
            out = self._run(seq, None)[0]
        # a (b, c, t) copy, not a view of (b, t, c) memory: the conv after it would otherwise
        # ask for its layout, which torch.export answers by fixing the batch size to 1
        return (out + seq).transpose(1, 2).clone(memory_format=torch.contiguous_format)
