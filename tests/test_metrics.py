import torch

from codec.metrics import code_statistics, si_sdr


def test_si_sdr_is_scale_invariant_and_ranks_noise():
    torch.manual_seed(0)
    clean = torch.randn(2, 1, 4000)
    noisy = clean + 0.1 * torch.randn_like(clean)
    assert torch.allclose(si_sdr(3 * noisy, clean), si_sdr(noisy, clean), atol=1e-4)
    assert (si_sdr(noisy, clean) - 20).abs().max() < 1.0  # noise at -20 dB
    assert (si_sdr(clean, clean) > 60).all()


def test_code_statistics():
    codes = torch.zeros(2, 1, 2, 8, dtype=torch.long)
    codes[:, 0, 1] = torch.arange(8)
    stats = code_statistics(codes, 8)
    assert stats["usage"] == [1 / 8, 1.0]
    assert stats["entropy_bits"][0] == 0 and abs(stats["entropy_bits"][1] - 3) < 1e-9


def _speech(fsdd_root, rate=16000):
    from codec.audio import read_for

    path = max(sorted(fsdd_root.glob("*_george_*.wav"))[:20], key=lambda p: p.stat().st_size)
    return read_for(path, rate, 1)


def _shelf(wav: torch.Tensor, rate: int, above_hz: float, gain_db: float) -> torch.Tensor:
    """wav with every frequency above `above_hz` scaled by `gain_db` (an FFT mask)."""
    spec = torch.fft.rfft(wav.double())
    hz = torch.fft.rfftfreq(wav.shape[-1], 1 / rate)
    spec[..., hz > above_hz] *= 10 ** (gain_db / 20)
    return torch.fft.irfft(spec, wav.shape[-1]).float()


def test_band_error_finds_a_tilt_and_its_size(fsdd_root):
    from codec.metrics import BAND_EDGES_HZ, band_error_db, worst_band

    torch.manual_seed(0)
    wav = _speech(fsdd_root)
    noise = 1e-4 * torch.randn_like(wav)  # FSDD is 8 kHz: give the top bands something
    wav = wav + noise
    assert band_error_db(wav, wav, 16000).abs().max() < 1e-4
    assert torch.allclose(band_error_db(0.5 * wav, wav, 16000), torch.tensor(-6.02), atol=0.01)
    tilted = band_error_db(_shelf(wav, 16000, 1700, -6.0), wav, 16000)
    lows = [hi <= 1600 for hi in BAND_EDGES_HZ[1:]]
    highs = [lo >= 1800 for lo in BAND_EDGES_HZ[:-1]]
    assert tilted[lows].abs().max() < 0.05
    assert torch.allclose(tilted[highs], torch.tensor(-6.0), atol=0.05)
    assert abs(worst_band(tilted) + 6.0) < 0.05


def test_band_error_is_bounded_where_the_input_has_no_band(fsdd_root):
    # 8 kHz speech read at 16 kHz has nothing above 4 kHz: noise added there reads as at most
    # the floor, and bands above 0.95 x Nyquist at 8 kHz are NaN
    from codec.metrics import BAND_FLOOR_DB, band_error_db

    wav = _speech(fsdd_root)
    noisy = wav + 0.01 * torch.randn_like(wav)
    assert band_error_db(noisy, wav, 16000).max() <= BAND_FLOOR_DB + 1e-3
    at_8k = band_error_db(_speech(fsdd_root, 8000), _speech(fsdd_root, 8000), 8000)
    assert at_8k[-1].isnan() and at_8k[:-3].isfinite().all()
