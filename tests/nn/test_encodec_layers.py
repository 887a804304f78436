"""Our convs and SEANet against the `encodec` package's (0.1.1) with the same weights: padding
(reflect or zeros, causal or centred, inputs shorter than the padding), weight norm and
EnCodec 48 kHz's time_group_norm."""

import re
import warnings

import pytest
import torch
from references import reference

from codec.nn import Conv1d, ConvTranspose1d, SEANetDecoder, SEANetEncoder

encodec_modules = reference("encodec.modules")

# EnCodec key -> ours, first matching rule (keys are given a leading dot)
KEY_RULES = [
    (r"\.convtr\.convtr\.bias$", ".bias"),  # our transposed conv keeps its bias apart
    (r"\.(conv|convtr)\.\1\.weight_g$", r".\1.parametrizations.weight.original0"),
    (r"\.(conv|convtr)\.\1\.weight_v$", r".\1.parametrizations.weight.original1"),
    (r"\.(conv|convtr)\.\1\.", r".\1."),
    (r"\.(conv|convtr)\.norm\.", ".norm."),
]


def ours_key(key: str) -> str:
    dotted = "." + key
    for pattern, replacement in KEY_RULES:
        if re.search(pattern, dotted):
            return re.sub(pattern, replacement, dotted)[1:]
    return key  # the LSTM's


def randomise_(module: torch.nn.Module) -> torch.nn.Module:
    """Weights away from their initial values, so that every parameter is checked: weight-norm
    gains and GroupNorm scales near 1, other weights and all biases random."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in sorted(module.named_parameters()):
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("weight_g") or re.search(r"norm\.weight$", name):
                param.copy_(1.0 + 0.2 * noise)
            elif "bias" in name:
                param.copy_(0.1 * noise)
            else:
                param.copy_(noise * param.shape[1:].numel() ** -0.5 if param.ndim > 1 else noise)
    return module


def copy_weights(theirs: torch.nn.Module, ours: torch.nn.Module) -> None:
    ours.load_state_dict({ours_key(k): v for k, v in theirs.state_dict().items()}, strict=True)


def build(factory, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation of the old weight_norm
        return factory(*args, **kwargs)


def assert_same(ours, theirs, x):
    with torch.no_grad():
        expected = theirs(x)
        actual = ours(x)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def conv_cases():
    for stride in range(1, 9):
        yield 2 * stride, stride, 1
    yield 7, 1, 1
    yield 3, 1, 3
    yield 5, 1, 2


# (norm, causal, pad_mode): EnCodec's 24 kHz (causal) and 48 kHz settings, and zero padding
CONV_SETTINGS = [
    ("weight_norm", True, "reflect"),
    ("weight_norm", False, "reflect"),
    ("time_group_norm", False, "reflect"),
    ("none", True, "constant"),
    ("none", False, "constant"),
]


@pytest.mark.parametrize("norm, causal, pad_mode", CONV_SETTINGS)
@pytest.mark.parametrize("kernel, stride, dilation", list(conv_cases()))
def test_conv_equals_encodec(norm, causal, pad_mode, kernel, stride, dilation):
    options = dict(stride=stride, dilation=dilation, causal=causal, norm=norm, pad_mode=pad_mode)
    theirs = randomise_(build(encodec_modules.SConv1d, 3, 4, kernel, **options)).eval()
    ours = Conv1d(3, 4, kernel, **options).eval()
    copy_weights(theirs, ours)
    padding = (kernel - 1) * dilation + 1 - stride
    for length in (1, max(1, padding - 1), 17, 64, 101):  # the first two: shorter than the pad
        assert_same(ours, theirs, torch.randn(2, 3, length))


@pytest.mark.parametrize("norm, causal", [(n, c) for n, c, _ in CONV_SETTINGS[:3]])
@pytest.mark.parametrize("kernel, stride", [(2 * s, s) for s in range(1, 9)] + [(3, 1), (5, 2)])
def test_transposed_conv_equals_encodec(norm, causal, kernel, stride):
    options = dict(stride=stride, causal=causal, norm=norm)
    theirs = randomise_(build(encodec_modules.SConvTranspose1d, 3, 4, kernel, **options)).eval()
    ours = ConvTranspose1d(3, 4, kernel, **options).eval()
    copy_weights(theirs, ours)
    if norm == "weight_norm":
        assert ours.convtr.parametrizations.weight.original0.shape == (3, 1, 1)  # dim=0
    for frames in (1, 5, 17):
        assert_same(ours, theirs, torch.randn(2, 3, frames))


def test_causal_group_norm_is_refused_like_encodec():
    """GroupNorm over the whole signal cannot be causal: EnCodec refuses it, so do we."""
    for theirs, ours in [
        (encodec_modules.SConv1d, Conv1d),
        (encodec_modules.SConvTranspose1d, ConvTranspose1d),
    ]:
        with pytest.raises(ValueError):
            build(theirs, 3, 4, 4, stride=2, causal=True, norm="time_group_norm")
        with pytest.raises(ValueError, match="time_group_norm.*causal"):
            ours(3, 4, 4, stride=2, causal=True, norm="time_group_norm")
    with pytest.raises(ValueError, match="time_group_norm"):
        SEANetEncoder(causal=True, norm="time_group_norm", n_filters=4, ratios=[2])


@pytest.mark.parametrize(
    "causal, norm", [(False, "weight_norm"), (True, "weight_norm"), (False, "time_group_norm")]
)
def test_seanet_equals_encodec(causal, norm):
    options = dict(
        channels=1,
        dimension=8,
        n_filters=4,
        ratios=[4, 2],
        causal=causal,
        norm=norm,
        pad_mode="reflect",
        true_skip=False,
        lstm=2,
    )
    for theirs_class, ours_class, width in [
        (encodec_modules.SEANetEncoder, SEANetEncoder, 1),
        (encodec_modules.SEANetDecoder, SEANetDecoder, 8),
    ]:
        theirs = randomise_(build(theirs_class, **options)).eval()
        ours = ours_class(**options).eval()
        copy_weights(theirs, ours)
        for length in (3, 40, 203):  # samples (encoder) or frames (decoder)
            assert_same(ours, theirs, torch.randn(2, width, length))
