"""Streamable 1-D convolutions.

Padding follows one rule everywhere: a strided conv of stride s over t samples gives exactly
ceil(t / s) frames, and a transposed conv of stride s gives exactly frames * s samples.
Causal layers pad (with zeros) only on the left, so in streaming mode each keeps the last
`padding` input samples (or the transposed conv's overlapping tail) between calls and feeding a
signal in chunks gives the offline output.

Inference (no autograd; streaming too) runs "time-major": activations are
(b, c, 1, t) tensors in channels-last memory, i.e. (b, t, c) rows, so a strided conv of kernel
2 x stride and a transposed conv of kernel 2 x stride are two plain matrix products on a free
reshape (polyphase), a 1x1 conv is one, and the other convs take oneDNN's channels-last kernels.
`time_major` / `from_time_major` convert at the edges; training keeps (b, c, t).

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
from einops import rearrange
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
    """F.pad of the last axis, (b, c, t) or time-major (b, c, 1, t), that also reflects inputs
    shorter than the padding (by zero-padding them first)."""
    extra = (0, 0) if x.ndim == 4 else ()
    if mode == "reflect":
        shortfall = max(left, right) - x.shape[-1] + 1
        if shortfall > 0:
            x = F.pad(x, (0, shortfall))
            out = F.pad(x, (left, right, *extra), mode="reflect")
            return out[..., : out.shape[-1] - shortfall]
        return F.pad(x, (left, right, *extra), mode="reflect")
    return F.pad(x, (left, right))


def time_major(x: torch.Tensor) -> torch.Tensor:
    """(b, c, t) -> (b, c, 1, t) in channels-last memory: the same numbers as (b, t, c) rows."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def from_time_major(x: torch.Tensor) -> torch.Tensor:
    """(b, c, 1, t) -> (b, c, t), a view (strides of (b, t, c) memory)."""
    return x.squeeze(2)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the time-major kernels run in: autocast's when it is on (in-place and out=
    matrix products are not autocast, so the kernels cast for themselves), else x's."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def _time_major_out(y: torch.Tensor) -> torch.Tensor:
    return y if y.is_contiguous(memory_format=torch.channels_last) else time_major(y.squeeze(2))


def _channels_last(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A conv weight (o, i, k) as (o, i, 1, k) in channels-last memory."""
    return weight.to(dtype).unsqueeze(2).contiguous(memory_format=torch.channels_last)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """Time-major (b, c, 1, t) -> contiguous (b, t, c)."""
    return x.squeeze(2).transpose(1, 2).contiguous()


def _from_rows(rows: torch.Tensor) -> torch.Tensor:
    """Contiguous (b, t, c) -> time-major (b, c, 1, t), a view."""
    return rows.transpose(1, 2).unsqueeze(2)


def _linear(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """(b, n, i) rows times weight (o, i)^T plus bias -> contiguous (b, n, o)."""
    b, n, i = rows.shape
    flat = rows.reshape(b * n, i)
    out = torch.mm(flat, weight.t()) if bias is None else torch.addmm(bias, flat, weight.t())
    return out.view(b, n, -1)


def _polyphase_weights(weight: torch.Tensor, stride: int, transposed: bool):
    """A kernel of 2 x stride taps split into its two halves as matrices over (tap, channel)
    rows: conv weight (o, i, 2s) -> two (s*i, o); transposed weight (i, o, 2s) -> two (i, s*o)."""
    halves = weight[..., :stride], weight[..., stride:]
    if transposed:
        return [rearrange(h, "i o s -> i (s o)").contiguous() for h in halves]
    return [rearrange(h, "o i s -> (s i) o").contiguous() for h in halves]


class StreamingModule(nn.Module):
    """A layer that can keep state between calls while `streaming` is on."""

    def __init__(self):
        super().__init__()
        self._streaming = False
        self._state = None
        self._derived: dict = {}

    def reset_state(self) -> None:
        self._state = None

    def derived(self, name: str, weight: torch.Tensor, make):
        """make(weight), cached until the weight changes (new storage or an in-place write).
        Only stored parameters are cached: a weight computed per access (weight norm not yet
        folded) is a new tensor each time, whose address the allocator may hand out again."""
        if not isinstance(weight, nn.Parameter):
            return make(weight.detach())
        key = (weight.data_ptr(), weight._version, weight.device, weight.dtype)
        hit = self._derived.get(name)
        if hit is None or hit[0] != key:
            hit = self._derived[name] = (key, make(weight.detach()))
        return hit[1]


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
        self.shape = (kernel_size, dilation, groups)
        self.effective_kernel = (kernel_size - 1) * dilation + 1
        self.padding = self.effective_kernel - stride

    def _padding_for(self, length: int) -> tuple[int, int]:
        """(left, right) padding that gives ceil(length / stride) frames."""
        frames = math.ceil(length / self.stride)
        extra = max(0, (frames - 1) * self.stride + self.effective_kernel - self.padding - length)
        if self.causal:
            return self.padding, extra
        return self.padding - self.padding // 2, self.padding // 2 + extra

    SMALL_FAN_IN = 16  # in_channels x kernel_size up to which im2col beats oneDNN
    FEW_FRAMES = 64  # output frames up to which im2col beats oneDNN's per-call set-up

    def _time_major(self, x: torch.Tensor) -> torch.Tensor:
        """Time-major (b, c_in, 1, t) -> (b, c_out, 1, ceil(t / stride)), no autograd."""
        if self._streaming and self.causal and self.padding:
            return self._time_major_conv(self._with_history(x), 0, 0)
        return self._time_major_conv(x, *self._padding_for(x.shape[-1]))

    def _with_history(self, x: torch.Tensor) -> torch.Tensor:
        """Streaming: the kept last `padding` samples, then x; keeps the new last ones."""
        if x.shape[-1] % self.stride:
            raise ValueError(
                f"streaming chunk of {x.shape[-1]} samples is not a multiple "
                f"of the stride {self.stride}"
            )
        state = self._state
        if state is None:
            state = x.new_zeros(*x.shape[:-1], self.padding)
        if x.ndim == 4:  # join the (b, t, c) rows so the result stays time-major
            full = _from_rows(torch.cat([_rows(state.to(x.dtype)), _rows(x)], 1))
        else:
            full = torch.cat([state, x], -1)
        self._state = full[..., full.shape[-1] - self.padding :]
        return full

    def _time_major_conv(self, x: torch.Tensor, left: int, right: int) -> torch.Tensor:
        """x padded by `left` / `right` (zeros or reflection), then the conv."""
        conv, s, (k, d, groups) = self.conv, self.stride, self.shape
        frames = (x.shape[-1] + left + right - self.effective_kernel) // s + 1
        dtype = _compute_dtype(x)
        x, weight, bias = x.to(dtype), conv.weight, conv.bias
        if bias is not None and bias.dtype != dtype:
            bias = bias.to(dtype)
        if self.pointwise:
            return _from_rows(pointwise_rows(self, x))
        if groups == 1 and d == 1 and s > 1 and k == 2 * s:
            # polyphase: after padding, frame f reads rows f and f + 1 of the (t/s, s*c) reshape
            lo, hi = self.derived(
                f"polyphase-{dtype}", weight, lambda w: _polyphase_weights(w.to(dtype), s, False)
            )
            if left == s and right == 0:  # causal, whole frames: the padding is one zero row
                blocks = _rows(x).reshape(x.shape[0], frames, -1)
                out = _linear(blocks, hi.t(), bias)
                for item, inputs in zip(out, blocks):
                    item[1:].addmm_(inputs[:-1], lo)
                return _from_rows(out)
            rows = _rows(pad1d(x, left, right, self.pad_mode))
            blocks = rows.reshape(rows.shape[0], frames + 1, -1)
            out = _linear(blocks[:, 1:], hi.t(), bias)
            for item, lower in zip(out, blocks[:, :-1]):
                item.addmm_(lower, lo)
            return _from_rows(out)
        if groups == 1 and s == 1 and weight.shape[0] * k <= weight.shape[1] and frames > 512:
            # few outputs per tap (the decoder's last layer): one product per tap on the
            # unpadded rows, then each output sums its taps' products along a diagonal (3.4x
            # faster than oneDNN at 240k frames, slower below ~1000: streaming chunks)
            return self._tap_products(x, left, right, dtype, bias)
        if groups == 1 and (weight.shape[1] * k <= self.SMALL_FAN_IN or frames <= self.FEW_FRAMES):
            # a narrow input (the first layer) or a few frames (streaming): oneDNN is slow
            # here, im2col + one matrix product is not
            w = self.derived(f"matrix-{dtype}", weight, lambda w: w.reshape(len(w), -1).to(dtype))
            rows = _rows(pad1d(x, left, right, self.pad_mode))
            cols = rows.unfold(1, self.effective_kernel, s)[..., ::d]  # (b, f, i, k)
            return _from_rows(_linear(cols.reshape(*cols.shape[:2], -1), w, bias))
        w4 = self.derived(f"channels_last-{dtype}", weight, lambda w: _channels_last(w, dtype))
        if self.pad_mode == "constant" and right <= left:
            y = F.conv2d(x, w4, bias, (1, s), (0, left), (1, d), groups)[..., :frames]
        else:
            y = F.conv2d(pad1d(x, left, right, self.pad_mode), w4, bias, (1, s), 0, (1, d), groups)
        return _time_major_out(y)

    @property
    def pointwise(self) -> bool:
        """A 1x1 conv (kernel 1, stride 1, one group): one matrix product per sample."""
        return self.shape == (1, 1, 1) and self.stride == 1

    def _matrix(self, dtype: torch.dtype) -> torch.Tensor:
        """A pointwise conv's weight as an (o, i) matrix."""
        return self.derived(f"matrix-{dtype}", self.conv.weight, lambda w: w[..., 0].to(dtype))

    def _tap_products(self, x, left: int, right: int, dtype, bias) -> torch.Tensor:
        """Stride 1: z = (k * o, i) taps @ x, padded like x (padding commutes with a
        per-sample product, reflection included), then y[o, t] = sum_j z[j, o, t + j * d]."""
        (k, d, _), o = self.shape, self.conv.weight.shape[0]
        taps = self.derived(
            f"taps-{dtype}", self.conv.weight, lambda w: rearrange(w.to(dtype), "o i k -> (k o) i")
        )
        # (k o, i) @ (b, i, t): MKL runs this thin product several times faster than (t, i) @
        # (i, k o), and its (b, k * o, t) result is the layout the diagonal sum wants
        z = torch.matmul(taps, _rows(x).transpose(1, 2))
        z = pad1d(z, left, right, self.pad_mode).contiguous()  # (b, k * o, t + padding)
        b, _, length = z.shape
        frames = length - self.effective_kernel + 1
        diagonals = z.as_strided((b, o, frames, k), (k * o * length, length, 1, o * length + d))
        y = diagonals.sum(-1)  # (b, o, frames)
        if bias is not None:
            y += bias[:, None]
        return time_major(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return self._time_major(x)
        if self._streaming and self.causal:
            return self.conv(self._with_history(x))
        left, right = self._padding_for(x.shape[-1])
        if self.pad_mode == "constant" and right <= left:
            # zero padding inside the conv (symmetric, surplus outputs dropped) saves copying x
            conv = self.conv
            y = F.conv1d(x, conv.weight, conv.bias, conv.stride, left, conv.dilation, conv.groups)
            return y[..., : math.ceil(x.shape[-1] / self.stride)]
        return self.conv(pad1d(x, left, right, self.pad_mode))


def pointwise_rows(conv: Conv1d, x: torch.Tensor, extra_bias=None) -> torch.Tensor:
    """A pointwise conv of time-major x, plus `extra_bias`, as contiguous (b, t, o) rows."""
    dtype = _compute_dtype(x)
    biases = [b for b in (conv.conv.bias, extra_bias) if b is not None]
    bias = sum(biases[1:], biases[0]).to(dtype) if biases else None
    return _linear(_rows(x.to(dtype)), conv._matrix(dtype), bias)


def add_pointwise_(out: torch.Tensor, conv: Conv1d, x: torch.Tensor) -> torch.Tensor:
    """out (b, t, o) rows += the pointwise conv of time-major x without its bias, in place;
    returns out time-major. With `pointwise_rows` this sums two pointwise convs with no second
    output, no add pass and one bias copy: for the thin outer layers those passes over memory
    cost about as much as the products."""
    rows = _rows(x.to(out.dtype))
    out.view(-1, out.shape[-1]).addmm_(rows.view(-1, rows.shape[-1]), conv._matrix(out.dtype).t())
    return _from_rows(out)


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

    def _time_major(self, x: torch.Tensor) -> torch.Tensor:
        """Time-major (b, c_in, 1, f) -> (b, c_out, 1, f * stride), no autograd."""
        dtype = _compute_dtype(x)
        rows = self._transposed_rows(_rows(x.to(dtype)))  # (b, (f - 1) * s + k, c_out)
        n = x.shape[-1] * self.stride
        if self._streaming and self.causal:
            if self._state is not None:
                rows[:, : self.overlap] += self._state
            self._state = rows[:, n:]
            rows = rows[:, :n]
        else:
            left = 0 if self.causal else self.overlap - self.overlap // 2
            rows = rows[:, left : left + n]
        bias = self.bias.to(dtype)
        # rows are this call's own product: add the bias in place unless a copy is due anyway
        rows = rows.add_(bias) if rows.is_contiguous() else rows + bias
        return _time_major_out(_from_rows(rows))

    def _transposed_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """(b, f, c_in) -> (b, (f - 1) * s + k, c_out), no bias."""
        weight, s = self.convtr.weight, self.stride
        dtype, frames = rows.dtype, rows.shape[1]
        if s > 1 and weight.shape[-1] == 2 * s:
            # polyphase: output block j (s samples) = x[j] @ lo + x[j - 1] @ hi
            lo, hi = self.derived(
                f"polyphase-{dtype}", weight, lambda w: _polyphase_weights(w.to(dtype), s, True)
            )
            y = rows.new_empty(rows.shape[0], frames + 1, lo.shape[1])
            for item, inputs in zip(y, rows):
                torch.mm(inputs, lo, out=item[:frames])
                item[frames:].zero_()
                item[1:].addmm_(inputs, hi)
            return y.view(y.shape[0], (frames + 1) * s, -1)
        w4 = self.derived(f"channels_last-{dtype}", weight, lambda w: _channels_last(w, dtype))
        return _rows(F.conv_transpose2d(_from_rows(rows), w4, None, (1, s)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return self._time_major(x)
        y = self.convtr(x)  # (b, c, (f - 1) * s + k), bias added once, below
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

    # up to this many steps per call the step loop beats the oneDNN kernel, whose per-call
    # weight re-layout (~4 ms for 2 x 512 units) dominates short streaming chunks
    STEP_LIMIT = 16

    def __init__(self, channels: int, layers: int = 2):
        super().__init__()
        self.lstm = nn.LSTM(channels, channels, layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:  # time-major: the (b, t, c) rows are the sequence
            seq = _rows(x)
            return _from_rows(self._run(seq).add_(seq))
        seq = x.transpose(1, 2)
        return (self._run(seq) + seq).transpose(1, 2)

    def _run(self, seq: torch.Tensor) -> torch.Tensor:
        """(b, t, c) -> LSTM outputs (b, t, c); carries (h, c) while streaming."""
        if not self._streaming:
            return self.lstm(seq)[0]
        if seq.shape[1] <= self.STEP_LIMIT and not torch.is_grad_enabled():
            out, self._state = self._steps(seq, self._state)
        else:
            out, self._state = self.lstm(seq, self._state)
        return out

    def _steps(self, seq: torch.Tensor, state):
        """The LSTM recurrence without autograd, layer by layer: the input products for all
        steps in one matrix product, then one matrix-vector product per step. seq (b, t, c)
        -> (b, t, c), (h, c) each (layers, b, c)."""
        lstm, (b, t, _) = self.lstm, seq.shape
        hidden = lstm.hidden_size
        if state is None:
            zeros = seq.new_zeros(lstm.num_layers, b, hidden)
            state = (zeros, zeros)
        hs, cs = [], []
        inputs = seq
        for layer in range(lstm.num_layers):
            # transposed copies: (in, 4 * hidden) rows stream faster through a matrix-vector
            w_ih, w_hh = (
                self.derived(
                    f"{name}{layer}-{seq.dtype}",
                    getattr(lstm, f"{name}_l{layer}"),
                    lambda w: w.t().to(seq.dtype).contiguous(),
                )
                for name in ("weight_ih", "weight_hh")
            )
            bias = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
            projected = torch.addmm(bias.to(seq.dtype), inputs.reshape(b * t, -1), w_ih)
            projected = projected.view(b, t, 4 * hidden)
            h, c = state[0][layer].to(seq.dtype), state[1][layer].to(seq.dtype)
            outputs = seq.new_empty(b, t, hidden)
            for step in range(t):
                gates = torch.addmm(projected[:, step], h, w_hh)
                act = gates.sigmoid()  # gate order i, f, g, o; g takes tanh instead
                i, f, o = act[:, :hidden], act[:, hidden : 2 * hidden], act[:, 3 * hidden :]
                g = gates[:, 2 * hidden : 3 * hidden].tanh()
                c = torch.addcmul(f * c, i, g)
                h = o * c.tanh()
                outputs[:, step] = h
            hs.append(h)
            cs.append(c)
            inputs = outputs
        return inputs, (torch.stack(hs), torch.stack(cs))
