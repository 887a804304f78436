"""SEANet and the streamable convolutions."""

import pytest
import soundfile as sf
import torch
from torch import nn

from codec.nn import SEANetDecoder, SEANetEncoder, Snake, fold_weight_norm, streaming
from codec.nn.conv import Conv1d, ConvTranspose1d, from_time_major, time_major

SMALL = dict(n_filters=4, dimension=16, ratios=[4, 2, 2], lstm=0)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("channels", [1, 2])
def test_shapes_for_any_length(causal, channels):
    enc = SEANetEncoder(channels=channels, causal=causal, **SMALL)
    dec = SEANetDecoder(channels=channels, causal=causal, **SMALL)
    assert enc.hop_length == 16
    for length in (1, 15, 16, 17, 100, 161):
        z = enc(torch.randn(2, channels, length))
        assert z.shape == (2, 16, -(-length // 16))
        assert dec(z).shape == (2, channels, z.shape[-1] * 16)


def test_causal_encoder_ignores_the_future():
    enc = SEANetEncoder(causal=True, **{**SMALL, "lstm": 1}).eval()
    x = torch.randn(1, 1, 320)
    y = x.clone()
    y[..., 160:] = torch.randn(1, 1, 160)
    torch.testing.assert_close(enc(x)[..., :10], enc(y)[..., :10])
    assert not torch.allclose(enc(x)[..., 10:], enc(y)[..., 10:])


@pytest.mark.parametrize("lstm", [0, 2])
def test_streaming_equals_offline(lstm):
    opts = {**SMALL, "lstm": lstm, "causal": True, "activation": "snake"}
    enc, dec = SEANetEncoder(**opts).eval(), SEANetDecoder(**opts).eval()
    x = torch.randn(2, 1, 16 * 24)
    with torch.no_grad():
        z, y = enc(x), dec(enc(x))
        with streaming(enc), streaming(dec):
            z_stream = torch.cat([enc(x[..., k : k + 48]) for k in range(0, x.shape[-1], 48)], -1)
            y_stream = torch.cat([dec(z[..., k : k + 1]) for k in range(z.shape[-1])], -1)
    torch.testing.assert_close(z_stream, z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y_stream, y, atol=1e-4, rtol=1e-4)  # outputs are O(1)


@pytest.mark.parametrize("grad", [False, True])
def test_streaming_in_uneven_chunks_equals_offline(grad):
    """Chunks above and below LSTM.STEP_LIMIT (oneDNN kernel vs step loop), on the time-major
    inference path and on the (b, c, t) path that runs with autograd on."""
    torch.manual_seed(0)
    opts = {**SMALL, "lstm": 2, "causal": True}
    enc, dec = SEANetEncoder(**opts).eval(), SEANetDecoder(**opts).eval()
    with torch.no_grad():
        for name, param in [*enc.named_parameters(), *dec.named_parameters()]:
            if "bias" in name:
                param.normal_(0.0, 0.1)
    x = torch.randn(2, 1, 16 * 50)
    sizes = [20, 1, 3, 17, 9]  # frames per chunk, cycled
    with torch.no_grad():
        z, y = enc(x), dec(enc(x))
    with torch.set_grad_enabled(grad), streaming(enc), streaming(dec):
        zs, ys, k, i = [], [], 0, 0
        while k < z.shape[-1]:
            n = sizes[i % len(sizes)]
            zs.append(enc(x[..., 16 * k : 16 * (k + n)]))
            ys.append(dec(z[..., k : k + n]))
            k, i = k + n, i + 1
    torch.testing.assert_close(torch.cat(zs, -1).detach(), z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(ys, -1).detach(), y, atol=1e-4, rtol=1e-4)


def test_streaming_rejects_chunks_off_the_stride():
    enc = SEANetEncoder(causal=True, **SMALL)
    with streaming(enc), pytest.raises(ValueError, match="multiple"):
        enc(torch.randn(1, 1, 17))


def test_weight_norm_folds_away_without_changing_outputs():
    enc = SEANetEncoder(**SMALL).eval()
    x = torch.randn(1, 1, 200)
    before = enc(x)
    fold_weight_norm(enc)
    assert not any("parametrizations" in name for name, _ in enc.named_parameters())
    torch.testing.assert_close(enc(x), before)


def test_snake_passes_gradient_to_input_and_alpha():
    snake = Snake(3)
    x = torch.randn(2, 3, 10, requires_grad=True)
    snake(x).sum().backward()
    assert x.grad.abs().sum() > 0 and snake.alpha.grad.abs().sum() > 0


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="activation"):
        SEANetEncoder(activation="relu6", **SMALL)
    with pytest.raises(ValueError, match="norm"):
        SEANetEncoder(norm="batch", **SMALL)


def test_real_speech_round_trip_shapes(fsdd_root):
    wav, rate = sf.read(sorted(fsdd_root.glob("*.wav"))[0], dtype="float32")
    x = torch.from_numpy(wav)[None, None]
    enc, dec = SEANetEncoder(**SMALL), SEANetDecoder(**SMALL)
    y = dec(enc(x))
    assert y.shape[-1] == -(-x.shape[-1] // 16) * 16 and torch.isfinite(y).all()


# -- time-major inference (no autograd) against the (b, c, t) path that training uses ----------


def _both_paths(module, x):
    with torch.enable_grad():
        reference = module(x)
    with torch.no_grad():
        fast = from_time_major(module(time_major(x)))
    return reference.detach(), fast


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "c_in, c_out, kernel, stride, dilation",
    [
        (1, 8, 7, 1, 1),
        (6, 5, 3, 1, 3),
        (6, 5, 1, 1, 1),
        (4, 6, 8, 4, 1),
        (4, 6, 3, 2, 1),
        (3, 2, 4, 2, 1),
        (24, 8, 7, 1, 1),
        (32, 1, 7, 1, 1),
        (16, 2, 3, 1, 2),
    ],
)
def test_time_major_conv_equals_the_training_path(causal, c_in, c_out, kernel, stride, dilation):
    torch.manual_seed(0)
    conv = Conv1d(c_in, c_out, kernel, stride, dilation, causal=causal, norm="none").eval()
    with torch.no_grad():
        conv.conv.bias.normal_()  # zero at init: make sure the fast paths add it
    for batch, length in ((1, 1), (1, 37), (3, 64), (2, 5), (2, 600)):  # 600: > 512 paths
        reference, fast = _both_paths(conv, torch.randn(batch, c_in, length))
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "c_in, c_out, kernel, dilation", [(32, 1, 7, 1), (16, 2, 3, 2), (6, 5, 3, 1)]
)
def test_time_major_conv_streams_in_uneven_chunks(c_in, c_out, kernel, dilation):
    torch.manual_seed(0)
    conv = Conv1d(c_in, c_out, kernel, dilation=dilation, causal=True, norm="none").eval()
    with torch.no_grad():
        conv.conv.bias.normal_()
    x = time_major(torch.randn(2, c_in, 700))
    with torch.no_grad():
        offline = conv(x)
        with streaming(conv):  # the last chunk takes the paths for long inputs
            chunks = [conv(x[..., a:b]) for a, b in [(0, 1), (1, 21), (21, 24), (24, 700)]]
    torch.testing.assert_close(torch.cat(chunks, -1), offline, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel, stride", [(8, 4), (4, 2), (5, 2), (3, 1)])
def test_time_major_transposed_conv_equals_the_training_path(causal, kernel, stride):
    torch.manual_seed(0)
    conv = ConvTranspose1d(6, 4, kernel, stride, causal=causal, norm="none").eval()
    with torch.no_grad():
        conv.bias.normal_()
    for batch, frames in ((1, 1), (1, 9), (3, 20)):
        reference, fast = _both_paths(conv, torch.randn(batch, 6, frames))
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("activation", ["elu", "snake"])
def test_seanet_inference_equals_the_training_path(causal, activation):
    torch.manual_seed(0)
    opts = dict(SMALL, lstm=2, causal=causal, activation=activation, true_skip=False, channels=2)
    enc, dec = SEANetEncoder(**opts).eval(), SEANetDecoder(**opts).eval()
    with torch.no_grad():
        for name, param in [*enc.named_parameters(), *dec.named_parameters()]:
            if "bias" in name:
                param.normal_(0.0, 0.1)
    x = torch.randn(3, 2, 16 * 9 + 5)
    with torch.enable_grad():
        z_ref = enc(x).detach()
        y_ref = dec(z_ref).detach()
    with torch.no_grad():
        z, y = enc(x), dec(z_ref)
    # the same sums in another order: float rounding only
    torch.testing.assert_close(z, z_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)


def test_time_major_weights_follow_in_place_updates():
    """The reshaped weights are cached; loading new weights in place must not serve stale
    ones."""
    conv = Conv1d(4, 6, 8, 4, causal=True, norm="none").eval()
    x = torch.randn(1, 4, 32)
    with torch.no_grad():
        before = from_time_major(conv(time_major(x)))
        conv.conv.weight.mul_(2.0)
        after = from_time_major(conv(time_major(x)))
    torch.testing.assert_close(
        after - conv.conv.bias[:, None], 2 * (before - conv.conv.bias[:, None])
    )


def test_only_stored_parameters_have_cached_layouts():
    """An unfolded weight-norm layer computes its weight per access; a freed computed weight's
    address comes back for the next one, so caching by address would serve stale layouts
    (validation during training runs the time-major path on such layers)."""
    layer = Conv1d(1, 1, 1)
    first = torch.full((4096,), 1.0)
    assert layer.derived("sum", first, lambda w: w.sum()).item() == 4096
    address = first.data_ptr()
    del first
    second = torch.full((4096,), 2.0)
    assert layer.derived("sum", second, lambda w: w.sum()).item() == 8192, (
        second.data_ptr() == address
    )
    weight = nn.Parameter(torch.ones(8))
    made = layer.derived("param", weight, lambda w: w * 2)
    assert layer.derived("param", weight, lambda w: w * 3) is made  # cached
    with torch.no_grad():
        weight.add_(1.0)  # an optimizer step: new version
    torch.testing.assert_close(
        layer.derived("param", weight, lambda w: w * 3), torch.full((8,), 6.0)
    )


@pytest.mark.parametrize("true_skip", [True, False])
def test_time_major_under_bfloat16_autocast_is_close(true_skip):
    torch.manual_seed(0)
    enc = SEANetEncoder(causal=True, true_skip=true_skip, **{**SMALL, "lstm": 1}).eval()
    x = torch.randn(1, 1, 16 * 20)
    with torch.no_grad():
        exact = enc(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            approx = enc(x).float()
    assert (approx - exact).abs().max() < 0.05 * exact.abs().max()
