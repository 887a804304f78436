"""An output filter folded into a SEANet decoder's last conv computes the decoder followed by
the filter, streams as the model does, and the gain measured on real speech moves by the
filter's response."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codec.audio import read_for
from codec.equalize import (
    fold_output_filter,
    minimum_phase_fir,
    output_gain_db,
    smooth_db,
)
from codec.models import Codec

TAPS = 48


def tilt_db(bins: int = 513, rate: int = 16000) -> tuple[torch.Tensor, torch.Tensor]:
    """0 dB up to 1 kHz, rising to +6 dB at 3 kHz and above: the shape a muffled codec needs."""
    hz = torch.linspace(0, rate / 2, bins, dtype=torch.float64)
    return (6 * ((hz - 1000) / 2000).clamp(0, 1)), hz


def response_db(fir: torch.Tensor, bins: int = 513) -> torch.Tensor:
    return 20 * torch.fft.rfft(fir.double(), 2 * (bins - 1)).abs().log10()


def test_the_filter_has_the_asked_magnitude_and_minimum_phase():
    gain, hz = tilt_db()
    fir = minimum_phase_fir(gain, TAPS)
    error = (response_db(fir) - gain)[(hz > 100) & (hz < 7500)]
    assert error.abs().max() < 0.6
    zeros = np.roots(fir.double().numpy())
    assert np.abs(zeros).max() < 1  # every zero inside the unit circle: minimum phase
    with pytest.raises(ValueError, match="taps"):
        minimum_phase_fir(gain, 0)


def test_smoothing_keeps_a_flat_gain_and_evens_a_ripple():
    gain, hz = tilt_db()
    flat = torch.full_like(gain, 3.0)
    assert torch.allclose(smooth_db(flat, hz, 0.5), flat)
    ripple = gain + torch.where(torch.arange(gain.shape[0]) % 2 == 0, 2.0, -2.0).double()
    assert (smooth_db(ripple, hz, 0.5) - gain)[hz > 2000].abs().max() < 0.5


@pytest.fixture
def speech(fsdd_root):
    paths = sorted(fsdd_root.glob("*.wav"))[:3]
    return [read_for(p, 16000, 1) for p in paths]


def causal_model(tiny_codec):
    model = tiny_codec(causal=True, pad_mode="zeros")
    with torch.no_grad():  # a bias, so that folding it shows
        model.decoder.model[-1].conv.bias.fill_(0.05)
    return model.eval()


def test_the_folded_decoder_is_the_decoder_then_the_filter(tiny_codec, speech):
    model = causal_model(tiny_codec)
    fir = minimum_phase_fir(tilt_db()[0], TAPS)
    folded = fold_output_filter(model, fir).eval()
    kernel = model.config.decoder["last_kernel_size"]
    assert folded.config.decoder["last_kernel_size"] == kernel + TAPS - 1
    with torch.no_grad():
        codes = model.encode(speech[0][None])
        assert torch.equal(folded.encode(speech[0][None]), codes)
        plain, equalized = model.decode(codes), folded.decode(codes)
        filtered = F.conv1d(F.pad(plain, (TAPS - 1, 0)), fir.flip(-1)[None, None])
    # past the filter's first TAPS samples (the bias before the signal starts differs)
    torch.testing.assert_close(equalized[..., TAPS:], filtered[..., TAPS:], atol=1e-5, rtol=0)


def test_the_folded_model_saves_and_streams_as_offline(tiny_codec, speech, tmp_path):
    folded = fold_output_filter(causal_model(tiny_codec), minimum_phase_fir(tilt_db()[0], TAPS))
    loaded = Codec.from_pretrained(folded.save_pretrained(tmp_path / "folded"))
    with torch.no_grad():
        codes = loaded.encode(speech[1][None])
        offline = loaded.decode(codes)
        with loaded.streaming():
            chunks = [loaded.decode(codes[..., i : i + 1]) for i in range(codes.shape[-1])]
    torch.testing.assert_close(torch.cat(chunks, -1), offline, atol=1e-5, rtol=0)


def test_the_measured_gain_moves_by_the_filter_response(tiny_codec, speech):
    model = causal_model(tiny_codec)
    gain, hz = tilt_db()
    fir = minimum_phase_fir(gain, TAPS)
    before, bins_hz = output_gain_db(model, speech)
    after, _ = output_gain_db(fold_output_filter(model, fir).eval(), speech)
    band = (bins_hz > 300) & (bins_hz < 6000)
    moved = (before - after)[band]
    assert (moved - response_db(fir)[band]).abs().median() < 0.5
    with pytest.raises(ValueError, match="no audio"):
        output_gain_db(model, [torch.zeros(1, 16000)])


def test_a_decoder_that_does_not_end_in_a_causal_conv_is_refused(tiny_codec):
    with pytest.raises(ValueError, match="folds only into a causal SEANet"):
        fold_output_filter(tiny_codec(causal=False), torch.ones(4))
