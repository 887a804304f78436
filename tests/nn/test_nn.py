"""SEANet and the streamable convolutions."""

import pytest
import soundfile as sf
import torch
from torch import nn

from codec.nn import Conv1d, SEANetDecoder, SEANetEncoder, Snake, fold_weight_norm, streaming

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
    """Zero padding: any chunking, from one frame on, gives the offline output."""
    opts = {**SMALL, "lstm": lstm, "causal": True, "activation": "snake", "pad_mode": "zeros"}
    enc, dec = SEANetEncoder(**opts).eval(), SEANetDecoder(**opts).eval()
    x = torch.randn(2, 1, 16 * 24)
    with torch.no_grad():
        z, y = enc(x), dec(enc(x))
        with streaming(enc, 2), streaming(dec, 2):
            z_stream = torch.cat([enc(x[..., k : k + 48]) for k in range(0, x.shape[-1], 48)], -1)
            y_stream = torch.cat([dec(z[..., k : k + 1]) for k in range(z.shape[-1])], -1)
    torch.testing.assert_close(z_stream, z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y_stream, y, atol=1e-4, rtol=1e-4)  # outputs are O(1)


@pytest.mark.parametrize("pad_mode", ["reflect", "zeros"])
def test_streaming_in_uneven_chunks_equals_offline(pad_mode):
    """With reflection too, since the first chunk (20 frames) is longer than every layer's
    padding."""
    torch.manual_seed(0)
    opts = {**SMALL, "lstm": 2, "causal": True, "pad_mode": pad_mode}
    enc, dec = SEANetEncoder(**opts).eval(), SEANetDecoder(**opts).eval()
    with torch.no_grad():
        for name, param in [*enc.named_parameters(), *dec.named_parameters()]:
            if "bias" in name:
                param.normal_(0.0, 0.1)
    x = torch.randn(2, 1, 16 * 50)
    sizes = [20, 1, 3, 17, 9]  # frames per chunk, cycled
    with torch.no_grad():
        z, y = enc(x), dec(enc(x))
    with torch.no_grad(), streaming(enc, 2), streaming(dec, 2):
        zs, ys, k, i = [], [], 0, 0
        while k < z.shape[-1]:
            n = sizes[i % len(sizes)]
            zs.append(enc(x[..., 16 * k : 16 * (k + n)]))
            ys.append(dec(z[..., k : k + n]))
            k, i = k + n, i + 1
    torch.testing.assert_close(torch.cat(zs, -1), z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat(ys, -1), y, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("pad_mode", ["zeros", "reflect"])
def test_a_stream_may_end_on_a_partial_chunk_and_then_refuses_more(pad_mode):
    """A chunk that is not a multiple of the hop is the stream's last: padded on the right as
    the offline signal's end is, so the stream still gives the offline frames."""
    enc = SEANetEncoder(causal=True, pad_mode=pad_mode, **SMALL).eval()
    x = torch.randn(1, 1, enc.hop_length * 20 + 17)
    with torch.no_grad():
        offline = enc(x)
        with streaming(enc):
            first = enc(x[..., : enc.hop_length * 12])
            last = enc(x[..., enc.hop_length * 12 :])
            with pytest.raises(ValueError, match="ended"):
                enc(torch.randn(1, 1, enc.hop_length))
    torch.testing.assert_close(torch.cat([first, last], -1), offline, atol=1e-5, rtol=1e-4)


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
    with pytest.raises(ValueError, match="pad_mode"):
        SEANetEncoder(pad_mode="replicate", **SMALL)


def test_real_speech_round_trip_shapes(fsdd_root):
    wav, rate = sf.read(sorted(fsdd_root.glob("*.wav"))[0], dtype="float32")
    x = torch.from_numpy(wav)[None, None]
    enc, dec = SEANetEncoder(**SMALL), SEANetDecoder(**SMALL)
    y = dec(enc(x))
    assert y.shape[-1] == -(-x.shape[-1] // 16) * 16 and torch.isfinite(y).all()


def test_causal_conv_pads_by_its_pad_mode():
    """Causal layers honour pad_mode: reflection of the signal on the left, or zeros; and
    "constant" names zero padding."""
    torch.manual_seed(0)
    x = torch.randn(1, 1, 20)
    outputs = {}
    for mode in ("reflect", "zeros", "constant"):
        conv = Conv1d(1, 1, 5, causal=True, norm="none", pad_mode=mode)
        with torch.no_grad():
            conv.conv.weight.copy_(torch.arange(1.0, 6.0).view(1, 1, 5))
            outputs[mode] = conv(x)
        padded = torch.nn.functional.pad(
            x, (4, 0), mode="reflect" if mode == "reflect" else "constant"
        )
        torch.testing.assert_close(
            outputs[mode], torch.nn.functional.conv1d(padded, conv.conv.weight, conv.conv.bias)
        )
    assert torch.equal(outputs["zeros"], outputs["constant"])
    assert not torch.allclose(outputs["reflect"][..., :4], outputs["zeros"][..., :4])


@pytest.mark.parametrize("first", [2, 12])
def test_reflect_streaming_first_chunk_reflects_itself(first):
    """Streaming a causal reflect-padded conv: the first chunk is padded by its own reflection
    (zero-extended when shorter than the padding, 6 here), later chunks follow the kept
    history; so the stream equals offline exactly when the first chunk is long enough."""
    torch.manual_seed(0)
    conv = Conv1d(2, 3, 7, causal=True, norm="none", pad_mode="reflect").eval()
    x = torch.randn(1, 2, 40)
    with torch.no_grad(), streaming(conv):
        stream = torch.cat([conv(x[..., :first]), conv(x[..., first:30]), conv(x[..., 30:])], -1)
    with torch.no_grad():
        offline = conv(x)
        head = conv(x[..., :first])  # offline on the first chunk: the same padding
    torch.testing.assert_close(stream[..., :first], head)
    if first > conv.padding:
        torch.testing.assert_close(stream, offline)
    else:
        assert not torch.allclose(stream[..., :first], offline[..., :first])


def test_group_norm_conv_has_encodec_keys():
    conv = Conv1d(3, 4, 3, norm="time_group_norm")
    assert set(conv.state_dict()) == {"conv.weight", "conv.bias", "norm.weight", "norm.bias"}
    assert isinstance(conv.norm, nn.GroupNorm) and conv.norm.num_groups == 1
    assert Conv1d(3, 4, 3).norm is None
