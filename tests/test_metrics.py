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
