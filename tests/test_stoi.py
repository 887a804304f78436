"""codec.stoi against pystoi (the metric codec eval reports), and the STOI training term."""

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from references import reference

from codec.losses import negative_stoi
from codec.stoi import stoi, third_octave_bands

pystoi = reference("pystoi")


def test_band_matrix_is_pystois():
    from pystoi.utils import thirdoct

    reference, _ = thirdoct(10_000, 512, 15, 150)
    np.testing.assert_array_equal(third_octave_bands().numpy(), reference)


def _speech(fsdd_root, count: int):
    """FSDD recordings long enough for STOI (8 kHz), as float32 tensors."""
    out = []
    for path in sorted(fsdd_root.glob("*.wav")):
        wav, rate = sf.read(path, dtype="float32")
        if len(wav) >= rate * 0.5:
            out.append(torch.from_numpy(wav))
        if len(out) == count:
            return out, rate
    pytest.skip("not enough FSDD recordings of 0.5 s or more")


def test_stoi_matches_pystoi_on_real_speech(fsdd_root):
    clips, rate = _speech(fsdd_root, 4)
    generator = torch.Generator().manual_seed(0)
    for clean in clips:
        upsampled = AF.resample(clean, rate, 16_000)  # the codec's rate
        distortions = {
            "noise": clean + 0.03 * torch.randn(clean.shape, generator=generator),
            "lowpass": AF.lowpass_biquad(clean, rate, 700.0),
        }
        for estimate in distortions.values():
            expected = pystoi.stoi(clean.numpy(), estimate.numpy(), rate)
            assert abs(float(stoi(estimate[None], clean[None], rate)[0]) - expected) < 0.005
        noisy16 = upsampled + 0.03 * torch.randn(upsampled.shape, generator=generator)
        expected = pystoi.stoi(upsampled.numpy(), noisy16.numpy(), 16_000)
        ours = float(stoi(noisy16[None, None], upsampled[None, None], 16_000)[0])
        assert abs(ours - expected) < 0.005  # through torchaudio's resampler, not pystoi's
        assert float(stoi(clean[None], clean[None], rate)[0]) > 0.999


def test_stoi_is_nan_without_enough_speech():
    torch.manual_seed(0)
    short = torch.randn(1, 2400)  # 0.3 s: fewer than SEGMENT (384 ms) frames
    assert torch.isnan(stoi(short, short, 8000)).all()
    silent = torch.zeros(1, 16_000)
    assert torch.isnan(stoi(silent, silent, 16_000)).all()


def test_negative_stoi_gradient_improves_the_score(fsdd_root):
    clips, rate = _speech(fsdd_root, 2)
    length = min(len(c) for c in clips)
    clean = torch.stack([c[:length] for c in clips])[:, None]
    estimate = AF.lowpass_biquad(clean, rate, 900.0) + 0.02 * torch.randn_like(clean)
    estimate.requires_grad_()
    before = negative_stoi(estimate, clean, rate)
    before.backward()
    assert torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0
    with torch.no_grad():
        stepped = estimate - 0.02 * estimate.grad / estimate.grad.abs().max()
    assert negative_stoi(stepped, clean, rate) < before


def test_negative_stoi_skips_items_without_speech(fsdd_root):
    clips, rate = _speech(fsdd_root, 1)
    speech = clips[0][None, None]
    silent = torch.zeros_like(speech)
    noisy = (speech + 0.05 * torch.randn_like(speech)).requires_grad_()
    both = torch.cat([noisy, silent.clone().requires_grad_()])
    torch.testing.assert_close(
        negative_stoi(both, torch.cat([speech, silent]), rate), negative_stoi(noisy, speech, rate)
    )
    broken = speech.clone()
    broken[..., 100] = float("nan")  # a non-finite estimate is not "no speech"
    assert torch.isnan(negative_stoi(broken, speech, rate))
    nothing = silent.clone().requires_grad_()
    loss = negative_stoi(nothing, silent, rate)
    loss.backward()
    assert loss == 0 and torch.equal(nothing.grad, torch.zeros_like(silent))
