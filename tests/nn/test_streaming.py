"""Typed streaming state (codec.nn.streaming): one entry point, states that can be taken out
and passed back, per-item restarts, and what it refuses."""

import dataclasses

import pytest
import torch

from codec.nn import (
    ISTFTDecoder,
    SEANetDecoder,
    SEANetEncoder,
    STFTEncoder,
    get_streaming_state,
    load_state_tensors,
    reset_streaming,
    set_streaming_state,
    state_tensors,
    streaming,
)
from codec.nn.conv import ConvState, ConvTransposeState, LSTMState
from codec.nn.vocos import OverlapAddState

SMALL = dict(n_filters=4, dimension=16, ratios=[4, 2, 2], lstm=1, causal=True)


def _parts(pad_mode="zeros"):
    torch.manual_seed(0)
    enc = SEANetEncoder(pad_mode=pad_mode, **SMALL).eval()
    dec = SEANetDecoder(pad_mode=pad_mode, **SMALL).eval()
    with torch.no_grad():
        for module in (enc, dec):
            for name, param in module.named_parameters():
                if "bias" in name:
                    param.normal_(0.0, 0.1)
    return enc, dec


def _frames(module, x, hop):
    return torch.cat([module(x[..., k : k + hop]) for k in range(0, x.shape[-1], hop)], -1)


def test_every_streaming_layer_declares_a_typed_state():
    enc, dec = _parts("reflect")
    with streaming(enc, batch_size=3), streaming(dec, batch_size=3):
        states = {**get_streaming_state(enc), **get_streaming_state(dec)}
    kinds = {type(s) for s in states.values()}
    assert kinds == {ConvState, ConvTransposeState, LSTMState}
    for state in states.values():
        assert dataclasses.is_dataclass(state)
        assert all(t.shape[0] == 3 for t in state.tensors().values())
        assert all(isinstance(t, torch.Tensor) for t in state.tensors().values())
    first_conv = states["model.0"]
    assert first_conv.first.dtype == torch.bool and bool(first_conv.first.all())
    decoder = ISTFTDecoder(channels=2, dimension=8, n_filters=8, hidden=8, n_blocks=1, causal=True)
    with streaming(decoder, batch_size=3):
        (synthesis,) = [
            s for s in get_streaming_state(decoder).values() if type(s) is OverlapAddState
        ]
        assert synthesis.tail.shape[0] == 6  # one row per item and channel


@pytest.mark.parametrize("pad_mode", ["zeros", "reflect"])
def test_a_state_taken_out_and_passed_back_resumes_the_stream(pad_mode):
    enc, _ = _parts(pad_mode)
    x = torch.randn(2, 1, 16 * 12)
    with torch.no_grad(), streaming(enc, batch_size=2):
        head = _frames(enc, x[..., :80], 16)
        saved = get_streaming_state(enc)
        tensors = {k: v.clone() for k, v in state_tensors(enc).items()}
        rest = _frames(enc, x[..., 80:], 16)
        set_streaming_state(enc, saved)
        again = _frames(enc, x[..., 80:], 16)
        load_state_tensors(enc, tensors)
        from_tensors = _frames(enc, x[..., 80:], 16)
    assert torch.equal(again, rest) and torch.equal(from_tensors, rest)
    with torch.no_grad():
        offline = enc(x)
    if pad_mode == "zeros":  # from sample 0, frame by frame
        torch.testing.assert_close(torch.cat([head, rest], -1), offline, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pad_mode", ["zeros", "reflect"])
def test_restarting_one_item_leaves_the_others_streaming(pad_mode):
    enc, dec = _parts(pad_mode)
    x = torch.randn(2, 1, 16 * 10)
    fresh = torch.randn(1, 1, 16 * 6)
    with torch.no_grad():
        with streaming(enc):
            alone = _frames(enc, fresh, 16)
        with streaming(enc, batch_size=2):
            before = _frames(enc, x[..., :64], 16)
            reset_streaming(enc, torch.tensor([False, True]))
            both = torch.cat([x[:1, :, 64:], fresh[..., : 16 * 6]], 0)
            after = _frames(enc, both, 16)
        with streaming(enc):
            straight = _frames(enc, x[:1], 16)
        z = torch.randn(2, 16, 5)
        with streaming(dec, batch_size=2):
            dec(z)
            reset_streaming(dec)  # every item
            restarted = dec(z)
        with streaming(dec, batch_size=2):
            new = dec(z)
    torch.testing.assert_close(after[1:], alone, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(torch.cat([before[:1], after[:1]], -1), straight, atol=1e-6, rtol=0)
    torch.testing.assert_close(restarted, new, atol=1e-6, rtol=0)


def test_the_stft_encoder_streams_each_channel():
    torch.manual_seed(0)
    kw = dict(dimension=8, n_filters=8, hidden=8, n_blocks=1, hop_length=80, istft_hop=40)
    encoder = STFTEncoder(channels=2, n_fft=160, causal=True, **kw).eval()
    x = torch.randn(3, 2, 800)
    with torch.no_grad():
        offline = encoder(x)
        with streaming(encoder, batch_size=3):
            stream = _frames(encoder, x, 80)
    torch.testing.assert_close(stream, offline, atol=1e-5, rtol=1e-5)


def test_misuse_is_named():
    enc, _ = _parts()
    with streaming(enc, batch_size=2):
        with pytest.raises(ValueError, match="batch of 2, got a batch of 1"):
            enc(torch.randn(1, 1, 16))
        with pytest.raises(RuntimeError, match="already streaming"):
            with streaming(enc):
                pass
        with pytest.raises(ValueError, match="not this module's"):
            set_streaming_state(enc, {})
        tensors = state_tensors(enc)
        tensors.pop(next(iter(tensors)))
        with pytest.raises(ValueError, match="do not fit"):
            load_state_tensors(enc, tensors)
    with pytest.raises(RuntimeError, match="not streaming"):
        get_streaming_state(enc)
    with pytest.raises(ValueError, match="batch_size"):
        with streaming(enc, batch_size=0):
            pass
