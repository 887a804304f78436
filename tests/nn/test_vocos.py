"""The frame-rate encoder and decoder (codec/nn/vocos.py): lengths, the inverse STFT's perfect
reconstruction, the encoder's STFT, causality, streaming in uneven chunks, the shipped configs
as Codec parts, and fast CPU inference."""

from pathlib import Path

import pytest
import torch
import yaml

from codec.models import Codec
from codec.models.config import CodecConfig
from codec.models.options import ConfigError
from codec.nn import ISTFTDecoder, STFTEncoder, for_cpu_inference, streaming
from codec.nn.vocos import COMPRESSION, OverlapAdd, STFTFeatures

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "model"
SMALL = dict(dimension=16, n_filters=24, hidden=48, n_blocks=2, hop_length=80, istft_hop=40)


def small_parts(causal: bool, channels: int = 1, n_fft: int = 160):
    torch.manual_seed(0)
    kw = SMALL | dict(causal=causal, channels=channels, n_fft=n_fft)
    return STFTEncoder(**kw).eval(), ISTFTDecoder(**kw).eval()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("samples", [80, 81, 800, 1239])
def test_lengths_are_frames_and_frames_times_hop(causal, samples):
    encoder, decoder = small_parts(causal, channels=2)
    with torch.no_grad():
        z = encoder(torch.randn(3, 2, samples))
        y = decoder(z)
    assert z.shape == (3, 16, -(-samples // 80))
    assert y.shape == (3, 2, z.shape[-1] * 80)


@pytest.mark.parametrize("n_fft, hop", [(160, 40), (160, 80), (120, 40)])
def test_overlap_add_of_a_signals_own_stft_frames_gives_the_signal_back(n_fft, hop):
    """Windowed frames of x placed as the causal decoder places them (frame j at j * hop),
    synthesised: x exactly, once the first frames' fade-in is over."""
    torch.manual_seed(0)
    n = 40
    x = torch.randn(2, (n + n_fft // hop) * hop, dtype=torch.float64)
    synthesis = OverlapAdd(n_fft, hop, lookahead=0).double()
    frames = torch.stack([x[:, j * hop : j * hop + n_fft] for j in range(n)], 1)
    spectrum = torch.fft.rfft(frames * synthesis.window, dim=-1)  # analysis window too
    y = synthesis(torch.fft.irfft(spectrum, n=n_fft, dim=-1))
    settled = (n_fft // hop - 1) * hop
    assert y.shape == (2, n * hop)
    torch.testing.assert_close(y[:, settled:], x[:, settled : n * hop], atol=1e-6, rtol=0)


def test_the_encoder_features_are_the_compressed_stft():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 1600)
    features = STFTFeatures(1, n_fft=160, hop=40, causal=True)
    with torch.no_grad():
        got = features(x)
    padded = torch.nn.functional.pad(x[:, 0], (120, 0))  # causal: frames end at their hop
    spec = torch.stft(
        padded,
        160,
        40,
        window=torch.hann_window(160),
        center=False,
        return_complex=True,
    )
    expected = spec * spec.abs().clamp(min=1e-6).pow(COMPRESSION - 1)
    assert got.shape == (2, 162, 40)
    torch.testing.assert_close(got[:, :81], expected.real, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(got[:, 81:], expected.imag, atol=2e-5, rtol=1e-4)
    assert not any(name.endswith("weight") for name in features.state_dict())


def test_causal_parts_do_not_look_ahead():
    encoder, decoder = small_parts(causal=True)
    x = torch.randn(1, 1, 1600)
    changed = x.clone()
    changed[..., 800:] = torch.randn(800)
    with torch.no_grad():
        z, z_changed = encoder(x), encoder(changed)
        y, y_changed = decoder(z), decoder(z_changed)
    assert torch.equal(z[..., :10], z_changed[..., :10])  # frame 9 ends at sample 800
    assert not torch.equal(z[..., 10:], z_changed[..., 10:])
    assert torch.equal(y[..., :800], y_changed[..., :800])
    # and a non-causal decoder does look ahead
    _, centred = small_parts(causal=False)
    with torch.no_grad():
        assert not torch.equal(centred(z)[..., :800], centred(z_changed)[..., :800])


@pytest.mark.parametrize("chunks", [[1, 2, 7, 10], [5, 5, 5, 5], [20]])
def test_the_causal_decoder_streams_the_offline_output(chunks):
    _, decoder = small_parts(causal=True)
    z = torch.randn(2, 16, sum(chunks))
    with torch.no_grad():
        offline = decoder(z)
        with streaming(decoder, 2):
            pieces = [decoder(part) for part in z.split(chunks, -1)]
    torch.testing.assert_close(torch.cat(pieces, -1), offline, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("chunks", [[80, 240, 80, 400], [800], [400, 320, 93]])
def test_the_causal_encoder_streams_the_offline_output(chunks):
    """Chunks of whole frames (hops), the last one possibly partial (the stream's end)."""
    encoder, _ = small_parts(causal=True)
    x = torch.randn(2, 1, sum(chunks))
    with torch.no_grad():
        offline = encoder(x)
        with streaming(encoder, 2):
            pieces = [encoder(part) for part in x.split(chunks, -1)]
    torch.testing.assert_close(torch.cat(pieces, -1), offline, atol=1e-5, rtol=1e-5)


def shipped_parts(causal: bool) -> dict:
    parts = {
        kind: yaml.safe_load((CONFIGS / kind / f"{name}.yaml").read_text())
        for kind, name in [("encoder", "stft"), ("decoder", "istft")]
    }
    for part in parts.values():
        part |= {"n_filters": 16, "hidden": 32, "n_blocks": 1, "causal": causal}
    return parts


def test_the_shipped_configs_build_a_codec_that_trains_and_streams():
    torch.manual_seed(0)
    quantizer = {"name": "grvq", "levels": 3, "codebook_size": 16, "kmeans_init": False}
    model = Codec(
        CodecConfig.from_dict({"dimension": 16, "quantizer": quantizer, **shipped_parts(True)})
    )
    assert (model.hop_length, model.causal) == (320, True)
    model.train()
    wav = torch.randn(2, 1, 3200) * 0.3
    out = model(wav)
    ((out["audio"] - wav).abs().mean() + out["commitment"]).backward()
    for name in ("encoder.backbone.embed", "encoder.project", "decoder.backbone", "decoder.head"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name)]
        assert grads and all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name
    model.eval()
    codes = model.encode(wav)
    offline = model.decode(codes)
    with model.streaming(batch_size=2):
        pieces = [model.decode(part) for part in codes.split([3, 1, 6], -1)]
    torch.testing.assert_close(torch.cat(pieces, -1), offline, atol=1e-6, rtol=1e-5)


def test_a_saved_frame_rate_model_loads_for_fast_cpu_inference_with_the_same_output(tmp_path):
    torch.manual_seed(0)
    quantizer = {"name": "grvq", "levels": 2, "codebook_size": 16, "kmeans_init": False}
    model = Codec(
        CodecConfig.from_dict({"dimension": 16, "quantizer": quantizer, **shipped_parts(False)})
    ).eval()
    wav = torch.randn(1, 1, 4000) * 0.3
    codes = model.encode(wav)
    expected = model.decode(codes)
    model.save_pretrained(tmp_path)
    loaded = Codec.from_pretrained(tmp_path)
    with torch.no_grad():
        for_cpu_inference(loaded)
    assert torch.equal(loaded.encode(wav), codes)
    torch.testing.assert_close(loaded.decode(codes), expected, atol=1e-5, rtol=1e-5)


def test_bad_stft_options_are_refused():
    parts = {"encoder": {"name": "stft"}, "decoder": {"name": "istft"}}
    with pytest.raises(ConfigError, match="decoder.hop_length must be a multiple"):
        CodecConfig.from_dict(parts | {"decoder": {"name": "istft", "hop_length": 300}})
    with pytest.raises(ConfigError, match="encoder.n_fft must be even"):
        CodecConfig.from_dict(parts | {"encoder": {"name": "stft", "n_fft": 500}})
    with pytest.raises(ValueError, match="decoder upsamples by 160"):
        Codec(
            CodecConfig.from_dict(
                {
                    "dimension": 16,
                    "encoder": {"name": "stft", "n_filters": 8, "hidden": 8, "n_blocks": 0},
                    "decoder": {
                        "name": "istft",
                        "n_filters": 8,
                        "hidden": 8,
                        "n_blocks": 0,
                        "hop_length": 160,
                    },
                    "quantizer": {"name": "grvq", "levels": 2, "codebook_size": 4},
                }
            )
        )
