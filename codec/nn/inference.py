"""CPU inference conversion: the same layers with fast kernels, applied to a loaded model.

    model = for_cpu_inference(model.eval().requires_grad_(False))   # in place; CUDA: untouched

The layers in codec.nn.conv / seanet have one (b, c, t) code path, the one training runs.
This module swaps each layer it knows (by type: conv, transposed conv, LSTM, SEANet residual
unit) for a subclass that also runs "time-major": activations are (b, c, 1, t) tensors in
channels-last memory, i.e. (b, t, c) rows, so a strided conv of kernel 2 x stride and a
transposed conv of kernel 2 x stride are two plain matrix products on a free reshape
(polyphase), a 1x1 conv is one, and the other convs take oneDNN's channels-last kernels. A
layer list (nn.Sequential) whose layers all run time-major then runs so between its input and
output; a list holding a layer the conversion does not know (DAC's Snake and residual units,
a GroupNorm-normed conv, a future architecture's) runs its plain path, so new layers never
have to implement this one. Parameters, buffers, state-dict keys and streaming behave as
before; only speed and float rounding change.

The layers kept here are those whose kernels beat ONNX Runtime (codec.runtime) by 10% or
more on some model's whole files (speech16k's decoder: docs/performance.md, CPU runtimes);
DAC's ran within 10% of it and run their plain path (`--runtime onnx` for speed).

Where each kernel wins depends on sizes; the switch points are the constants below.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from codec.nn.conv import LSTM, Conv1d, ConvTranspose1d, pad1d, pad_mode_of, reflection_parts
from codec.nn.seanet import ResidualUnit

SMALL_FAN_IN = 16  # in_channels x kernel_size up to which im2col beats oneDNN
IM2COL_FRAMES = 64  # output frames up to which im2col beats oneDNN's per-call set-up
# output frames above which a stride-1 conv with few outputs per tap (the decoder's last layer)
# runs one product per tap (3.4x faster than oneDNN at 240k frames, slower below ~1000)
TAP_PRODUCT_FRAMES = 512
# streaming chunks of up to this many steps run the LSTM step loop, which beats the oneDNN
# kernel whose per-call weight re-layout (~4 ms for 2 x 512 units) dominates short chunks
LSTM_STEP_LIMIT = 16

# layers that act sample by sample and so run on either layout as they are
ELEMENTWISE = (nn.ELU, nn.Identity, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU)


# -- layout -----------------------------------------------------------------------------------


def time_major(x: torch.Tensor) -> torch.Tensor:
    """(b, c, t) -> (b, c, 1, t) in channels-last memory: the same numbers as (b, t, c) rows."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


def from_time_major(x: torch.Tensor) -> torch.Tensor:
    """(b, c, 1, t) -> (b, c, t), a view (strides of (b, t, c) memory)."""
    return x.squeeze(2)


def _time_major_out(y: torch.Tensor) -> torch.Tensor:
    return y if y.is_contiguous(memory_format=torch.channels_last) else time_major(y.squeeze(2))


def _rows(x: torch.Tensor) -> torch.Tensor:
    """Time-major (b, c, 1, t) -> contiguous (b, t, c)."""
    return x.squeeze(2).transpose(1, 2).contiguous()


def _from_rows(rows: torch.Tensor) -> torch.Tensor:
    """Contiguous (b, t, c) -> time-major (b, c, 1, t), a view."""
    return rows.transpose(1, 2).unsqueeze(2)


def _pad(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """pad1d of x in x's dtype, time-major (b, c, 1, t) -> time-major, (b, c, t) -> (b, c, t):
    CPU autocast runs reflection padding in fp32, whose output the matrix products below (not
    autocast: in place or out=) would refuse. A time-major reflection is joined straight into
    time-major memory: torch.cat would lay its output out (b, c, t), a transposing copy that
    cost more than the conv it feeds."""
    if not left and not right:  # x itself: every caller reads it or copies it
        return x
    with torch.autocast(x.device.type, enabled=False):
        if x.ndim == 3:
            return pad1d(x, left, right, mode)
        if pad_mode_of(mode) == "zeros":
            return _time_major_out(F.pad(x, (left, right)))
        b, c, _, t = x.shape
        out = x.new_empty(b, t + left + right, c).transpose(1, 2)  # (b, c, t') of (b, t', c)
        torch.cat(reflection_parts(from_time_major(x), left, right), -1, out=out)
        return out.unsqueeze(2)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the kernels run in: autocast's when it is on (in-place and out= matrix
    products are not autocast, so the kernels cast for themselves), else x's."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def _channels_last(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A conv weight (o, i, k) as (o, i, 1, k) in channels-last memory."""
    return weight.to(dtype).unsqueeze(2).contiguous(memory_format=torch.channels_last)


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


class LayoutCache:
    """Weights re-laid-out for the kernels, each cached until its weight changes (new storage
    or an in-place write). Only stored parameters are cached: a weight computed per access
    (weight norm not yet folded) is a new tensor each time, whose address the allocator may
    hand out again."""

    def __init__(self):
        self._entries: dict = {}

    def get(self, name: str, weight: torch.Tensor, make):
        """make(weight), from the cache while the weight is unchanged."""
        if not isinstance(weight, nn.Parameter):
            return make(weight.detach())
        key = (weight.data_ptr(), weight._version, weight.device, weight.dtype)
        hit = self._entries.get(name)
        if hit is None or hit[0] != key:
            hit = self._entries[name] = (key, make(weight.detach()))
        return hit[1]


class TimeMajorLayer:
    """Marks a converted layer: it takes and returns time-major (b, c, 1, t) tensors (and still
    runs its plain path on (b, c, t) ones)."""

    _layouts: LayoutCache


def runs_time_major(layer: nn.Module) -> bool:
    return isinstance(layer, (TimeMajorLayer, *ELEMENTWISE))


def run_time_major(layers, x: torch.Tensor) -> torch.Tensor:
    """Time-major x through `layers` in turn -> time-major output. A layer that does not run
    time-major gets the (b, c, t) view and its output is laid out time-major again for the next
    layer that does; elementwise layers take whichever layout comes."""
    is_time_major = True
    for layer in layers:
        if isinstance(layer, ELEMENTWISE):
            pass
        elif isinstance(layer, TimeMajorLayer) and not is_time_major:
            x, is_time_major = time_major(x), True
        elif not isinstance(layer, TimeMajorLayer) and is_time_major:
            x, is_time_major = from_time_major(x), False
        x = layer(x)
    return x if is_time_major else time_major(x)


# -- layers -----------------------------------------------------------------------------------


class TimeMajorConv1d(TimeMajorLayer, Conv1d):
    """Conv1d: time-major (b, c_in, 1, t) -> (b, c_out, 1, ceil(t / stride)), no autograd."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            return super().forward(x)
        if self.is_streaming:
            joined = self._with_history(from_time_major(x))
            return self._conv(time_major(joined), 0, 0)
        return self._conv(x, *self._padding_for(x.shape[-1]))

    @property
    def pointwise(self) -> bool:
        """A 1x1 conv (kernel 1, stride 1, one group): one matrix product per sample."""
        return (self.kernel_size, self.dilation, self.groups, self.stride) == (1, 1, 1, 1)

    def _conv(self, x: torch.Tensor, left: int, right: int) -> torch.Tensor:
        """x padded by `left` / `right` (zeros or reflection), then the conv."""
        s, k, d, groups = self.stride, self.kernel_size, self.dilation, self.groups
        frames = (x.shape[-1] + left + right - self.effective_kernel) // s + 1
        dtype = _compute_dtype(x)
        x, weight, bias = x.to(dtype), self.conv.weight, self.conv.bias
        if bias is not None and bias.dtype != dtype:
            bias = bias.to(dtype)
        if self.pointwise:
            return _from_rows(pointwise_rows(self, x))
        if groups == 1 and d == 1 and s > 1 and k == 2 * s:
            # polyphase: after padding, frame f reads rows f and f + 1 of the (t/s, s*c) reshape
            lo, hi = self._layouts.get(
                f"polyphase-{dtype}", weight, lambda w: _polyphase_weights(w.to(dtype), s, False)
            )
            if self.pad_mode == "zeros" and left == s and right == 0:
                # causal, whole frames: the padding is one zero row
                blocks = _rows(x).reshape(x.shape[0], frames, -1)
                out = _linear(blocks, hi.t(), bias)
                for item, inputs in zip(out, blocks):
                    item[1:].addmm_(inputs[:-1], lo)
                return _from_rows(out)
            rows = _rows(_pad(x, left, right, self.pad_mode))
            blocks = rows.reshape(rows.shape[0], frames + 1, -1)
            out = _linear(blocks[:, 1:], hi.t(), bias)
            for item, lower in zip(out, blocks[:, :-1]):
                item.addmm_(lower, lo)
            return _from_rows(out)
        few_per_tap = weight.shape[0] * k <= weight.shape[1]
        if groups == 1 and s == 1 and few_per_tap and frames > TAP_PRODUCT_FRAMES:
            return self._tap_products(x, left, right, dtype, bias)
        if groups == 1 and (weight.shape[1] * k <= SMALL_FAN_IN or frames <= IM2COL_FRAMES):
            # a narrow input (the first layer) or a few frames (streaming): oneDNN is slow
            # here, im2col + one matrix product is not
            w = self._layouts.get(
                f"matrix-{dtype}", weight, lambda w: w.reshape(len(w), -1).to(dtype)
            )
            rows = _rows(_pad(x, left, right, self.pad_mode))
            cols = rows.unfold(1, self.effective_kernel, s)[..., ::d]  # (b, f, i, k)
            return _from_rows(_linear(cols.reshape(*cols.shape[:2], -1), w, bias))
        w4 = self._layouts.get(f"channels_last-{dtype}", weight, lambda w: _channels_last(w, dtype))
        if self.pad_mode == "zeros" and right <= left:
            y = F.conv2d(x, w4, bias, (1, s), (0, left), (1, d), groups)[..., :frames]
        else:
            y = F.conv2d(_pad(x, left, right, self.pad_mode), w4, bias, (1, s), 0, (1, d), groups)
        return _time_major_out(y)

    def _matrix(self, dtype: torch.dtype) -> torch.Tensor:
        """A pointwise conv's weight as an (o, i) matrix."""
        return self._layouts.get(f"matrix-{dtype}", self.conv.weight, lambda w: w[..., 0].to(dtype))

    def _tap_products(self, x, left: int, right: int, dtype, bias) -> torch.Tensor:
        """Stride 1: z = (k * o, i) taps @ x, padded like x (padding commutes with a
        per-sample product, reflection and its zero extension included), then
        y[o, t] = sum_j z[j, o, t + j * d]."""
        k, d, o = self.kernel_size, self.dilation, self.conv.weight.shape[0]
        taps = self._layouts.get(
            f"taps-{dtype}", self.conv.weight, lambda w: rearrange(w.to(dtype), "o i k -> (k o) i")
        )
        # (k o, i) @ (b, i, t): MKL runs this thin product several times faster than (t, i) @
        # (i, k o), and its (b, k * o, t) result is the layout the diagonal sum wants
        z = torch.matmul(taps, _rows(x).transpose(1, 2))
        z = _pad(z, left, right, self.pad_mode).contiguous()  # (b, k * o, t + padding)
        b, _, length = z.shape
        frames = length - self.effective_kernel + 1
        diagonals = z.as_strided((b, o, frames, k), (k * o * length, length, 1, o * length + d))
        y = diagonals.sum(-1)  # (b, o, frames)
        if bias is not None:
            y += bias[:, None]
        return time_major(y)


def pointwise_rows(conv: TimeMajorConv1d, x: torch.Tensor, extra_bias=None) -> torch.Tensor:
    """A pointwise conv of time-major x, plus `extra_bias`, as contiguous (b, t, o) rows."""
    dtype = _compute_dtype(x)
    biases = [b for b in (conv.conv.bias, extra_bias) if b is not None]
    bias = sum(biases[1:], biases[0]).to(dtype) if biases else None
    return _linear(_rows(x.to(dtype)), conv._matrix(dtype), bias)


def add_pointwise_(out: torch.Tensor, conv: TimeMajorConv1d, x: torch.Tensor) -> torch.Tensor:
    """out (b, t, o) rows += the pointwise conv of time-major x without its bias, in place;
    returns out time-major. With `pointwise_rows` this sums two pointwise convs with no second
    output, no add pass and one bias copy: for the thin outer layers those passes over memory
    cost about as much as the products."""
    rows = _rows(x.to(out.dtype))
    out.view(-1, out.shape[-1]).addmm_(rows.view(-1, rows.shape[-1]), conv._matrix(out.dtype).t())
    return _from_rows(out)


class TimeMajorConvTranspose1d(TimeMajorLayer, ConvTranspose1d):
    """ConvTranspose1d: time-major (b, c_in, 1, f) -> (b, c_out, 1, f * stride), no autograd."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            return super().forward(x)
        dtype = _compute_dtype(x)
        rows = self._transposed_rows(_rows(x.to(dtype)))  # (b, (f - 1) * s + k, c_out)
        n = x.shape[-1] * self.stride
        if self.is_streaming:
            state = self.streaming_state(x.shape[0])
            rows[:, : self.overlap] += state.tail.transpose(1, 2).to(dtype)
            state.tail = rows[:, n:].transpose(1, 2)
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
            lo, hi = self._layouts.get(
                f"polyphase-{dtype}", weight, lambda w: _polyphase_weights(w.to(dtype), s, True)
            )
            y = rows.new_empty(rows.shape[0], frames + 1, lo.shape[1])
            for item, inputs in zip(y, rows):
                torch.mm(inputs, lo, out=item[:frames])
                item[frames:].zero_()
                item[1:].addmm_(inputs, hi)
            return y.view(y.shape[0], (frames + 1) * s, -1)
        w4 = self._layouts.get(f"channels_last-{dtype}", weight, lambda w: _channels_last(w, dtype))
        return _rows(F.conv_transpose2d(_from_rows(rows), w4, None, (1, s)))


class TimeMajorLSTM(TimeMajorLayer, LSTM):
    """LSTM on time-major input, whose (b, t, c) rows are the sequence; short streaming chunks
    take a step loop."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            return super().forward(x)
        seq = _rows(x)
        if not self.is_streaming:
            out = self.lstm(seq)[0]
        else:
            state = self.streaming_state(x.shape[0])
            carried = (state.h.transpose(0, 1), state.c.transpose(0, 1))
            if seq.shape[1] <= LSTM_STEP_LIMIT:
                out, (h, c) = self._steps(seq, carried)
            else:
                carried = tuple(t.to(seq.dtype).contiguous() for t in carried)
                out, (h, c) = self.lstm(seq, carried)
            state.h, state.c = h.transpose(0, 1), c.transpose(0, 1)
        return _from_rows(out.add_(seq))

    def _steps(self, seq: torch.Tensor, state):
        """The LSTM recurrence without autograd, layer by layer: the input products for all
        steps in one matrix product, then one matrix-vector product per step. seq (b, t, c)
        -> (b, t, c), (h, c) each (layers, b, c)."""
        lstm, (b, t, _) = self.lstm, seq.shape
        hidden = lstm.hidden_size
        hs, cs = [], []
        inputs = seq
        for layer in range(lstm.num_layers):
            # transposed copies: (in, 4 * hidden) rows stream faster through a matrix-vector
            w_ih, w_hh = (
                self._layouts.get(
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


class TimeMajorResidualUnit(TimeMajorLayer, ResidualUnit):
    """ResidualUnit on time-major x, which it may overwrite: inside a SEANet x is the previous
    layer's fresh output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            return super().forward(x)
        first, conv, second, last = self.block
        if (
            isinstance(self.shortcut, TimeMajorConv1d)
            and self.shortcut.pointwise
            and isinstance(last, TimeMajorConv1d)
            and last.pointwise
            and all(runs_time_major(layer) for layer in self.block)
        ):
            # the shortcut's product first (with the block's last bias); then the block's
            # first ELU may overwrite x, and its last product adds into the shortcut's
            out = pointwise_rows(self.shortcut, x, extra_bias=last.conv.bias)
            h = F.elu(x, first.alpha, inplace=True) if isinstance(first, nn.ELU) else first(x)
            return add_pointwise_(out, last, run_time_major([conv, second], h))
        out = run_time_major(self.block, x)  # fresh: the block ends in a conv
        return out.add_(run_time_major([self.shortcut], x))


class TimeMajorSequential(nn.Sequential):
    """A layer list run time-major between its (b, c, t) input and output (a (b, c, t) view
    of (b, t, c) memory). On another device than the CPU, or under torch.compile, it runs the
    plain path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or torch.compiler.is_compiling():
            return super().forward(x)
        if self.training or (
            torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        ):
            raise RuntimeError(
                "a model converted by for_cpu_inference is for inference only: call it in eval "
                "mode under torch.no_grad(), or with requires_grad_(False)"
            )
        return from_time_major(run_time_major(self, time_major(x)))


# -- the conversion ---------------------------------------------------------------------------

FAST_LAYERS = {
    Conv1d: TimeMajorConv1d,
    ConvTranspose1d: TimeMajorConvTranspose1d,
    LSTM: TimeMajorLSTM,
    ResidualUnit: TimeMajorResidualUnit,
}


def _convertible(layer: nn.Module) -> bool:
    """A known layer (its exact class, not a subclass) without a GroupNorm."""
    return type(layer) in FAST_LAYERS and getattr(layer, "norm", None) is None


def _layer_lists(module: nn.Module):
    """The outermost plain nn.Sequentials under `module` (itself included) whose layers all
    run time-major, at least one of them a converted layer: those run time-major as a whole.
    A converted layer's own lists (a residual unit's block) are its own to run."""
    if isinstance(module, TimeMajorLayer):
        return
    layers = list(module.children())
    if (
        type(module) is nn.Sequential
        and all(map(runs_time_major, layers))
        and any(isinstance(layer, TimeMajorLayer) for layer in layers)
    ):
        yield module
        return
    for layer in layers:
        yield from _layer_lists(layer)


def for_cpu_inference(module: nn.Module) -> nn.Module:
    """Convert `module` in place for fast CPU inference and return it: each known layer
    becomes its time-major subclass (same parameters and state-dict keys) and each outermost
    layer list of such layers runs time-major as a whole. A module with parameters or buffers
    off the CPU is returned as it is. Fold weight norm first (`fold_weight_norm`): unfolded layers
    work, recomputing their weight on every call.

    Raises ValueError for a module in training mode, or with parameters that require grad
    while autograd is on (convert under torch.no_grad() or after requires_grad_(False)): the
    fast kernels neither train nor pass gradients."""
    tensors = [*module.parameters(), *module.buffers()]
    if any(t.device.type != "cpu" for t in tensors):
        return module
    name = type(module).__name__
    if any(m.training for m in module.modules()):
        raise ValueError(f"for_cpu_inference: {name} is in training mode; call .eval() first")
    if torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters()):
        raise ValueError(
            f"for_cpu_inference: {name} has parameters that require grad; call "
            ".requires_grad_(False) first or convert under torch.no_grad()"
        )
    for layer in module.modules():
        if _convertible(layer):
            layer.__class__ = FAST_LAYERS[type(layer)]
            layer._layouts = LayoutCache()
    for layers in list(_layer_lists(module)):
        layers.__class__ = TimeMajorSequential
    return module


# -- bf16 support -----------------------------------------------------------------------------

# /proc/cpuinfo flags of native bf16 matrix arithmetic: x86 AVX512-BF16 / AMX-BF16, Arm BF16
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The first CPU's feature flags ("flags" on x86, "Features" on Arm); empty where the file
    is missing (not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    match = re.search(r"^(?:flags|Features)\s*:(.*)$", text, flags=re.M)
    return set(match.group(1).split()) if match else set()


# oneDNN ISA limits (ONEDNN_MAX_CPU_ISA) under which it has no native bf16 kernels
_ONEDNN_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"}


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (else bf16 is emulated, and slower
    than fp32). Kernels held to an older ISA (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2,
    as `make bench ISA=avx2` does) count as the CPU they pretend to be."""
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in _ONEDNN_WITHOUT_BF16:
        return False
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    if x86 and torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2"):
        return False
    return bool(cpu_flags() & NATIVE_BF16_FLAGS)


def cpu_isa() -> str:
    """PyTorch's kernel ISA on this CPU and its bf16 support, e.g. "AVX512 (bf16: native)"."""
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{capability} (bf16: {'native' if native_bf16() else 'emulated'})"
