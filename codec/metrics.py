"""Evaluation metrics: SI-SDR, mel distance, and code statistics."""

from __future__ import annotations

import math

import torch

from codec.losses import MelLoss
from codec.sdr import si_sdr

__all__ = ["MelDistance", "code_statistics", "si_sdr"]


class MelDistance(MelLoss):
    """The multi-scale mel distance (MelLoss) as a metric: lower is better."""

    @torch.no_grad()
    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(estimate, target)


def code_statistics(codes: torch.Tensor, codebook_size: int) -> dict[str, list[float]]:
    """codes (b, g, levels, f) -> per level, averaged over groups: `usage` (fraction of codes
    used) and `entropy_bits` (the bits per code an entropy coder could reach)."""
    usage, entropy = [], []
    for level in range(codes.shape[2]):
        u, h = [], []
        for group in range(codes.shape[1]):
            flat = codes[:, group, level].reshape(-1)
            flat = flat[flat >= 0]
            counts = torch.bincount(flat, minlength=codebook_size).double()
            p = counts / counts.sum().clamp(min=1)
            u.append(float((counts > 0).double().mean()))
            h.append(float(-(p[p > 0] * p[p > 0].log2()).sum()))
        usage.append(sum(u) / len(u))
        entropy.append(sum(h) / len(h))
    return {"usage": usage, "entropy_bits": entropy, "max_bits": math.log2(codebook_size)}


# Half-octave bands from 100 Hz, the last one widened to 7 kHz: where speech codecs tilt.
BAND_EDGES_HZ: tuple[float, ...] = (*(100 * 2 ** (k / 2) for k in range(12)), 7000.0)
BAND_FLOOR_DB = 50.0  # bands this far below the input's loudest band count at that floor
ACTIVE_DB = 40.0  # frames this far below the input's loudest frame are pauses, left out


def active_spectra(
    estimate: torch.Tensor, reference: torch.Tensor, rate: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean power per frequency bin of both signals (c, t), channels averaged, over the frames
    where the reference is within ACTIVE_DB of its loudest (speech, not the pauses):
    -> (estimate (bins,), reference (bins,), hz (bins,)), float64, a 1024-point FFT at 16 kHz
    (scaled with the rate)."""
    n_fft = 1 << max(8, round(math.log2(rate / 16000 * 1024)))
    window = torch.hann_window(n_fft, dtype=torch.float64)

    def power(wav: torch.Tensor) -> torch.Tensor:  # (c, t) -> (bins, frames)
        mono = wav.double().mean(0)
        if mono.shape[-1] < n_fft:
            mono = torch.nn.functional.pad(mono, (0, n_fft - mono.shape[-1]))
        spec = torch.stft(mono, n_fft, n_fft // 4, window=window, return_complex=True)
        return spec.abs().pow(2)

    est, ref = power(estimate), power(reference)
    energy = ref.sum(0)
    active = energy >= energy.max() * 10 ** (-ACTIVE_DB / 10)
    hz = torch.arange(ref.shape[0], dtype=torch.float64) * rate / n_fft
    return est[:, active].mean(1), ref[:, active].mean(1), hz


def band_error_db(
    estimate: torch.Tensor, reference: torch.Tensor, rate: int, edges=BAND_EDGES_HZ
) -> torch.Tensor:
    """Decoded minus input level in dB per frequency band: (c, t), (c, t) -> (len(edges) - 1,).

    Levels are mean power over the frames where the input is within ACTIVE_DB of its loudest
    (`active_spectra`). A level more than BAND_FLOOR_DB below the input's loudest band is
    raised to that floor, so a band the input does not have (8 kHz audio played at 16 kHz)
    shows added noise at most BAND_FLOOR_DB, not an infinite ratio. Bands above 0.95 x Nyquist
    are NaN. Positive: the decoded audio is louder there."""
    est, ref, hz = active_spectra(estimate, reference, rate)
    levels = []
    for spec in (est, ref):
        bands = [spec[(hz >= lo) & (hz < hi)].sum() for lo, hi in zip(edges, edges[1:])]
        levels.append(10 * torch.stack(bands).clamp(min=1e-30).log10())
    floor = levels[1].max() - BAND_FLOOR_DB
    error = levels[0].clamp(min=floor) - levels[1].clamp(min=floor)
    above = torch.tensor([hi > 0.95 * rate / 2 for hi in edges[1:]])
    return error.masked_fill(above, math.nan).float()


def worst_band(errors: torch.Tensor) -> float:
    """The signed error of the band farthest from 0 dB (NaN bands ignored)."""
    finite = errors[errors.isfinite()]
    return float(finite[finite.abs().argmax()]) if finite.numel() else math.nan
