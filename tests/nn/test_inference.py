"""The CPU inference conversion: converted layers and SEANets against the plain ones, streaming,
bf16 autocast, what it refuses, and the bf16 capability probe."""

import copy
import itertools

import pytest
import torch
from torch import nn

from codec.nn import (
    Conv1d,
    ConvTranspose1d,
    SEANetDecoder,
    SEANetEncoder,
    fold_weight_norm,
    for_cpu_inference,
    inference,
    streaming,
)
from codec.nn.conv import pad1d
from codec.nn.inference import (
    IM2COL_FRAMES,
    LSTM_STEP_LIMIT,
    SMALL_FAN_IN,
    TAP_PRODUCT_FRAMES,
    LayoutCache,
    TimeMajorConv1d,
    TimeMajorSequential,
    from_time_major,
    time_major,
)

# n_filters 8: the residual convs' fan-in (8 x 3) is above SMALL_FAN_IN, the first conv's (7)
# below it
SMALL = dict(n_filters=8, dimension=16, ratios=[4, 2, 2], lstm=2, true_skip=False)
CONFIGS = list(itertools.product([False, True], ["reflect", "zeros"], ["elu", "snake"]))


def _random_biases_(*modules):
    """Biases are zero at init: make sure the fast paths add them; Snake's alpha away from 1."""
    with torch.no_grad():
        for module in modules:
            for name, param in module.named_parameters():
                if "bias" in name:
                    param.normal_(0.0, 0.1)
                elif name.endswith("alpha"):
                    param.uniform_(0.5, 1.5)


def _pair(factory, fold=True):
    """(plain, converted) copies of one randomly initialised layer or model."""
    torch.manual_seed(0)
    plain = factory().eval()
    _random_biases_(plain)
    if fold:
        fold_weight_norm(plain)
    fast = for_cpu_inference(copy.deepcopy(plain).requires_grad_(False))
    return plain, fast


def _assert_close(actual, expected, rtol=1e-5):
    """Equal to float rounding: max error within rtol of the output's scale."""
    assert actual.shape == expected.shape
    scale = expected.abs().max().clamp_min(1e-3)
    assert (actual - expected).abs().max() <= rtol * scale, (actual - expected).abs().max() / scale


def _time_major_call(layer, x):
    with torch.no_grad():
        return from_time_major(layer(time_major(x)))


# -- layers -----------------------------------------------------------------------------------

# the conv shapes the kernels split on: pointwise, polyphase (kernel 2 x stride), other strides,
# fan-in on both sides of SMALL_FAN_IN, few outputs per tap (tap products when long)
CONV_SHAPES = [
    (1, 8, 7, 1, 1),
    (6, 5, 3, 1, 3),
    (6, 5, 1, 1, 1),
    (4, 6, 8, 4, 1),
    (4, 6, 3, 2, 1),
    (3, 2, 4, 2, 1),
    (24, 8, 7, 1, 1),
    (32, 1, 7, 1, 1),
    (16, 2, 3, 1, 2),
]
# output frames on both sides of IM2COL_FRAMES and TAP_PRODUCT_FRAMES, and shorter than a padding
FRAMES = (1, 5, IM2COL_FRAMES, IM2COL_FRAMES + 1, TAP_PRODUCT_FRAMES, TAP_PRODUCT_FRAMES + 1)


def test_the_shapes_cross_the_fan_in_threshold():
    fan_ins = [c_in * kernel for c_in, _, kernel, _, _ in CONV_SHAPES]
    assert min(fan_ins) <= SMALL_FAN_IN < max(fan_ins)


@pytest.mark.parametrize(
    "causal, pad_mode", list(itertools.product([False, True], ["reflect", "zeros"]))
)
@pytest.mark.parametrize("c_in, c_out, kernel, stride, dilation", CONV_SHAPES)
def test_converted_conv_equals_plain(causal, pad_mode, c_in, c_out, kernel, stride, dilation):
    plain, fast = _pair(
        lambda: Conv1d(c_in, c_out, kernel, stride, dilation, causal=causal, pad_mode=pad_mode)
    )
    assert type(fast) is TimeMajorConv1d
    for batch, frames in zip((1, 2, 3, 1, 2, 1), FRAMES):
        x = torch.randn(batch, c_in, frames * stride - (stride > 1))  # ragged when strided
        with torch.no_grad():
            expected = plain(x)
        _assert_close(_time_major_call(fast, x), expected)
        _assert_close(fast(x), expected)  # (b, c, t) input: the plain path


@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
@pytest.mark.parametrize("length, left, right", [(50, 3, 3), (50, 4, 0), (2, 3, 5)])
def test_padding_stays_time_major(pad_mode, length, left, right):
    """A padded time-major activation keeps its layout: joined (b, c, t), the next kernel's
    transposing copy cost more than the conv (EnCodec's reflection-padded encoder)."""
    x = torch.randn(2, 5, length)
    padded = inference._pad(time_major(x), left, right, pad_mode)
    assert padded.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(from_time_major(padded), pad1d(x, left, right, pad_mode))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel, stride", [(8, 4), (4, 2), (5, 2), (3, 1)])
def test_converted_transposed_conv_equals_plain(causal, kernel, stride):
    plain, fast = _pair(lambda: ConvTranspose1d(6, 4, kernel, stride, causal=causal))
    for batch, frames in ((1, 1), (1, 9), (3, 20)):
        x = torch.randn(batch, 6, frames)
        with torch.no_grad():
            expected = plain(x)
        _assert_close(_time_major_call(fast, x), expected)


@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
@pytest.mark.parametrize(
    "c_in, c_out, kernel, dilation", [(32, 1, 7, 1), (16, 2, 3, 2), (6, 5, 3, 1)]
)
def test_converted_conv_streams_in_uneven_chunks(pad_mode, c_in, c_out, kernel, dilation):
    """The last chunk is long enough for the long-input kernels."""
    plain, fast = _pair(
        lambda: Conv1d(c_in, c_out, kernel, dilation=dilation, causal=True, pad_mode=pad_mode)
    )
    x = torch.randn(2, c_in, 700)
    edges = [(0, 13), (13, 14), (14, 21), (21, 24), (24, 700)]  # first chunk: > the padding
    with torch.no_grad():
        offline = plain(x)
        with streaming(fast, 2):
            chunks = [fast(time_major(x[..., a:b])) for a, b in edges]
    _assert_close(from_time_major(torch.cat(chunks, -1)), offline)


def test_converted_weights_follow_in_place_updates():
    """The re-laid-out weights are cached; loading new weights in place must not serve stale
    ones."""
    plain, fast = _pair(lambda: Conv1d(4, 6, 8, 4, causal=True))
    x = torch.randn(1, 4, 32)
    before = _time_major_call(fast, x)
    with torch.no_grad():
        fast.conv.weight.mul_(2.0)
    after = _time_major_call(fast, x)
    bias = fast.conv.bias[:, None]
    _assert_close(after - bias, 2 * (before - bias))


def test_only_stored_parameters_have_cached_layouts():
    """An unfolded weight-norm layer computes its weight per access; a freed computed weight's
    address comes back for the next one, so caching by address would serve stale layouts."""
    cache = LayoutCache()
    first = torch.full((4096,), 1.0)
    assert cache.get("sum", first, lambda w: w.sum()).item() == 4096
    address = first.data_ptr()
    del first
    second = torch.full((4096,), 2.0)
    assert cache.get("sum", second, lambda w: w.sum()).item() == 8192, second.data_ptr() == address
    weight = nn.Parameter(torch.ones(8))
    made = cache.get("param", weight, lambda w: w * 2)
    assert cache.get("param", weight, lambda w: w * 3) is made  # cached
    with torch.no_grad():
        weight.add_(1.0)  # an optimizer step: new version
    torch.testing.assert_close(cache.get("param", weight, lambda w: w * 3), torch.full((8,), 6.0))


# -- SEANet -----------------------------------------------------------------------------------


def _seanets(causal, pad_mode, activation, fold=True, **extra):
    opts = {**SMALL, "causal": causal, "pad_mode": pad_mode, "activation": activation, **extra}
    return _pair(lambda: SEANetEncoder(**opts), fold), _pair(lambda: SEANetDecoder(**opts), fold)


@pytest.mark.parametrize("causal, pad_mode, activation", CONFIGS)
def test_converted_seanet_equals_plain(causal, pad_mode, activation):
    """Snake is not converted (DAC's layers run their plain path): its lists run plain."""
    (enc, fast_enc), (dec, fast_dec) = _seanets(causal, pad_mode, activation, channels=2)
    for fast in (fast_enc, fast_dec):
        assert isinstance(fast.model, TimeMajorSequential) == (activation == "elu")
    # 1 to 65 latent frames: the last layers cross IM2COL_FRAMES, the first TAP_PRODUCT_FRAMES
    for frames in (1, 3, IM2COL_FRAMES + 1):
        x = torch.randn(2, 2, 16 * frames - 5)
        with torch.no_grad():
            z, y = enc(x), dec(enc(x))
            _assert_close(fast_enc(x), z)
            _assert_close(fast_dec(z), y)


def test_identity_shortcut_seanet_converts_and_agrees():
    """true_skip: the residual units' unfused path, also under bf16 autocast."""
    (enc, fast_enc), (dec, fast_dec) = _seanets(True, "reflect", "elu", true_skip=True)
    x = torch.randn(1, 1, 16 * 20)
    with torch.no_grad():
        z, y = enc(x), dec(enc(x))
        _assert_close(fast_enc(x), z)
        _assert_close(fast_dec(z), y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert (fast_enc(x).float() - z).abs().max() < 0.1 * z.abs().max()


def test_weight_norm_need_not_be_folded():
    (enc, fast_enc), (dec, fast_dec) = _seanets(True, "reflect", "elu", fold=False)
    x = torch.randn(1, 1, 16 * 20)
    with torch.no_grad():
        _assert_close(fast_enc(x), enc(x))
        _assert_close(fast_dec(enc(x)), dec(enc(x)))


@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
@pytest.mark.parametrize("activation", ["elu", "snake"])
def test_converted_seanet_streams_in_uneven_chunks(pad_mode, activation):
    """Chunks of frames on both sides of LSTM_STEP_LIMIT (oneDNN kernel vs step loop); the
    first is longer than every layer's padding, so reflection streams exactly too."""
    (enc, fast_enc), (dec, fast_dec) = _seanets(True, pad_mode, activation)
    x = torch.randn(2, 1, 16 * 60)
    sizes = [20, 1, 3, LSTM_STEP_LIMIT + 1, LSTM_STEP_LIMIT, 9]  # frames per chunk, cycled
    with torch.no_grad():
        z, y = enc(x), dec(enc(x))
        with streaming(fast_enc, 2), streaming(fast_dec, 2):
            zs, ys, k, i = [], [], 0, 0
            while k < z.shape[-1]:
                n = sizes[i % len(sizes)]
                zs.append(fast_enc(x[..., 16 * k : 16 * (k + n)]))
                ys.append(fast_dec(z[..., k : k + n]))
                k, i = k + n, i + 1
    _assert_close(torch.cat(zs, -1), z)
    _assert_close(torch.cat(ys, -1), y)


@pytest.mark.parametrize("causal, pad_mode, activation", CONFIGS)
def test_bfloat16_autocast_is_close(causal, pad_mode, activation):
    """Every configuration runs under CPU bf16 autocast (non-causal reflection used to fail:
    autocast pads in fp32) and stays near fp32."""
    (enc, fast_enc), (dec, fast_dec) = _seanets(causal, pad_mode, activation)
    x = torch.randn(1, 1, 16 * 40)
    with torch.no_grad():
        z = enc(x)
        y = dec(z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            z_bf16 = fast_enc(x).float()
            y_bf16 = fast_dec(z).float()
    for approx, exact in ((z_bf16, z), (y_bf16, y)):
        assert torch.isfinite(approx).all()
        assert (approx - exact).abs().max() < 0.1 * exact.abs().max()


def test_a_list_with_unknown_layers_runs_plain():
    """A layer the conversion does not know (a conv subclass, a GroupNorm-normed conv) keeps
    its list on the (b, c, t) path: no layout conversions inside it."""

    class Scaled(Conv1d):
        def forward(self, x):
            return 2 * super().forward(x)

    torch.manual_seed(0)
    enc = SEANetEncoder(**SMALL).eval()
    enc.model[3] = Scaled(8, 16, 4, stride=2).eval()  # replaces the first strided conv
    enc.model[0] = Conv1d(1, 8, 7, norm="time_group_norm").eval()
    _random_biases_(enc)
    fast = for_cpu_inference(copy.deepcopy(enc).requires_grad_(False))
    assert type(fast.model[3]) is Scaled and type(fast.model[0]) is Conv1d
    assert type(fast.model) is nn.Sequential
    assert isinstance(fast.model[1], inference.TimeMajorLayer)
    x = torch.randn(2, 1, 16 * 30)
    with torch.no_grad():
        _assert_close(fast(x), enc(x))


def test_unknown_layers_in_a_residual_unit_run_plain_between_time_major_ones():
    """A converted residual unit takes its block's unknown layers on their (b, c, t) path,
    the list around it staying time-major."""
    torch.manual_seed(0)
    enc = SEANetEncoder(**SMALL).eval()
    enc.model[1].block[1] = Conv1d(8, 4, 3, norm="time_group_norm").eval()
    _random_biases_(enc)
    fast = for_cpu_inference(copy.deepcopy(enc).requires_grad_(False))
    assert type(fast.model) is TimeMajorSequential
    assert type(fast.model[1].block[1]) is Conv1d
    x = torch.randn(2, 1, 16 * 30)
    with torch.no_grad():
        _assert_close(fast(x), enc(x))


def test_group_norm_seanet_converts_and_agrees():
    (enc, fast_enc), (dec, fast_dec) = _seanets(False, "reflect", "elu", norm="time_group_norm")
    x = torch.randn(2, 1, 16 * 10)
    with torch.no_grad():
        _assert_close(fast_enc(x), enc(x))
        _assert_close(fast_dec(enc(x)), dec(enc(x)))


def test_conversion_keeps_the_state_dict():
    torch.manual_seed(0)
    enc = fold_weight_norm(SEANetEncoder(**SMALL).eval())
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    for_cpu_inference(for_cpu_inference(enc.requires_grad_(False)))  # twice: a no-op
    after = enc.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)


# -- what the conversion refuses or leaves alone ----------------------------------------------


def test_refuses_training_mode_and_parameters_under_autograd():
    enc = SEANetEncoder(**SMALL)
    with pytest.raises(ValueError, match="training mode"):
        for_cpu_inference(enc)
    enc.eval()
    with pytest.raises(ValueError, match="require grad"):
        for_cpu_inference(enc)
    assert type(enc.model) is nn.Sequential  # nothing converted
    with torch.no_grad():
        for_cpu_inference(enc)  # allowed: no autograd now
    assert isinstance(enc.model, TimeMajorSequential)


def test_converted_model_refuses_to_run_for_training():
    _, fast = _pair(lambda: SEANetEncoder(**SMALL))
    fast.requires_grad_(True)
    with pytest.raises(RuntimeError, match="inference only"):
        fast(torch.randn(1, 1, 64))
    fast.requires_grad_(False).train()
    with pytest.raises(RuntimeError, match="inference only"):
        fast(torch.randn(1, 1, 64))


def test_modules_off_the_cpu_are_left_as_they_are():
    enc = SEANetEncoder(**SMALL).eval().requires_grad_(False).to("meta")
    assert for_cpu_inference(enc) is enc
    assert type(enc.model) is nn.Sequential and type(enc.model[0]) is Conv1d


# -- bf16 capability --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, native",
    [
        ({"avx2", "avx512f", "avx512_bf16"}, True),
        ({"avx2", "amx_bf16", "amx_tile"}, True),
        ({"fp", "asimd", "bf16"}, True),  # Arm
        ({"avx2", "avx512f", "avx512bw"}, False),
        (set(), False),  # no /proc/cpuinfo
    ],
)
def test_native_bf16_reads_the_cpu_flags(monkeypatch, flags, native):
    monkeypatch.setattr(inference, "cpu_flags", lambda: flags)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert inference.native_bf16() is native
    isa = inference.cpu_isa()
    assert isa.startswith(torch.backends.cpu.get_cpu_capability())
    assert isa.endswith("(bf16: native)" if native else "(bf16: emulated)")


@pytest.mark.parametrize(
    "capability, onednn",
    [("AVX2", ""), ("DEFAULT", ""), ("AVX512", "AVX2"), ("AVX512", "avx512_core")],
)
def test_kernels_held_to_an_older_isa_count_as_emulated_bf16(monkeypatch, capability, onednn):
    """make bench ISA=avx2 holds PyTorch's and oneDNN's kernels to AVX2 on an AVX-512 core: bf16
    is then emulated whatever the CPU's flags say."""
    monkeypatch.setattr(inference, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    monkeypatch.setattr(inference.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", onednn)
    assert not inference.native_bf16()


def test_cpu_flags_parse_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert inference.cpu_flags(x86) == {"fpu", "avx2", "avx512_bf16"}
    assert inference.cpu_flags(arm) == {"fp", "asimd", "bf16"}
    assert inference.cpu_flags(tmp_path / "missing") == set()
