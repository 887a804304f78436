"""Recording-chain augmentation: what microphones, rooms, phone lines and level settings do to
speech before a codec hears it. A training segment is changed here and is then both the codec's
input and its target: a codec reproduces what it is given, whatever the chain before it was.

    wav (c, t) -> [EQ] -> [band limits] -> [resampling chain] -> [room] -> [noise] -> [level]

Each step runs with its own probability, drawn from the item's generator, so a segment is the
same for the same seed, epoch and index in any number of DataLoader workers. `augment=none`
(the default) leaves segments as read; `augment=recording_chain` is this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio.functional as AF
from omegaconf import OmegaConf

PEAK = 0.99  # a level change never clips


@dataclass(frozen=True)
class RecordingChain:
    """Probabilities and ranges of each step (ranges drawn uniformly; dB, Hz, seconds)."""

    p_eq: float = 0.5
    eq_bands: tuple[int, int] = (1, 3)  # peaking filters per segment
    eq_db: float = 8.0  # each filter's gain in [-eq_db, eq_db]
    p_band: float = 0.3
    highpass_hz: tuple[float, float] = (50.0, 300.0)
    lowpass_hz: tuple[float, float] = (3400.0, 7500.0)
    p_resample: float = 0.2
    resample_rates: tuple[int, ...] = (8000, 11025, 12000)
    p_room: float = 0.3
    rt60_s: tuple[float, float] = (0.15, 0.7)
    direct_to_reverb_db: tuple[float, float] = (0.0, 12.0)
    p_noise: float = 0.3
    snr_db: tuple[float, float] = (20.0, 40.0)
    p_level: float = 0.5
    level_db: tuple[float, float] = (-18.0, 6.0)

    def __call__(self, wav: torch.Tensor, rate: int, rng: np.random.Generator) -> torch.Tensor:
        """(c, t) float32 at `rate` -> (c, t), the same length."""
        length = wav.shape[-1]
        out = wav.double()
        if rng.random() < self.p_eq:
            for _ in range(int(rng.integers(self.eq_bands[0], self.eq_bands[1] + 1))):
                hz = math.exp(rng.uniform(math.log(80.0), math.log(min(7000.0, 0.45 * rate))))
                gain = rng.uniform(-self.eq_db, self.eq_db)
                out = AF.equalizer_biquad(out, rate, hz, gain, rng.uniform(0.5, 2.0))
        if rng.random() < self.p_band:
            out = AF.highpass_biquad(out, rate, rng.uniform(*self.highpass_hz))
            cutoff = min(rng.uniform(*self.lowpass_hz), 0.45 * rate)
            out = AF.lowpass_biquad(out, rate, cutoff)
        if rng.random() < self.p_resample:
            low = int(rng.choice([r for r in self.resample_rates if r < rate] or [rate]))
            down = AF.resample(out, rate, low, lowpass_filter_width=16, rolloff=0.9)
            out = AF.resample(down, low, rate, lowpass_filter_width=16, rolloff=0.9)[..., :length]
        if rng.random() < self.p_room:
            out = _room(out, rate, rng, self.rt60_s, self.direct_to_reverb_db)
        if rng.random() < self.p_noise:
            out = _noise(out, rng, rng.uniform(*self.snr_db))
        if rng.random() < self.p_level:
            out = out * 10 ** (rng.uniform(*self.level_db) / 20)
        peak = float(out.abs().max())
        if peak > PEAK:
            out = out * (PEAK / peak)
        return out.float().contiguous()


def _room(wav, rate, rng, rt60_s, drr_db) -> torch.Tensor:
    """Convolved with a synthetic room response: a direct path and exponentially decaying
    noise (60 dB down after rt60) at a direct-to-reverberant ratio in `drr_db`; RMS kept."""
    rt60 = rng.uniform(*rt60_s)
    n = max(2, int(rt60 * rate))
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    tail[0] = 0.0
    tail *= 10 ** (-rng.uniform(*drr_db) / 20) / (np.sqrt((tail**2).sum()) + 1e-12)
    tail[0] = 1.0
    response = torch.from_numpy(tail).to(wav.dtype)
    wet = AF.fftconvolve(wav, response.expand(wav.shape[0], -1))[..., : wav.shape[-1]]
    return wet * (wav.pow(2).mean().sqrt() / wet.pow(2).mean().sqrt().clamp(min=1e-12))


def _noise(wav, rng, snr_db: float) -> torch.Tensor:
    """Plus white, pink or brown noise at `snr_db` below the segment's power (nothing is added
    to digital silence)."""
    power = float(wav.pow(2).mean())
    if power < 1e-10:
        return wav
    n = wav.shape[-1]
    spectrum = np.fft.rfft(rng.standard_normal((wav.shape[0], n)))
    slope = rng.choice([0.0, 1.0, 2.0])  # power falls as 1 / f^slope
    freqs = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    noise = torch.from_numpy(np.fft.irfft(spectrum / freqs ** (slope / 2), n)).to(wav.dtype)
    noise = noise * math.sqrt(power / 10 ** (snr_db / 10) / float(noise.pow(2).mean()))
    return wav + noise


AUGMENTS = {"recording_chain": RecordingChain}


def build_augment(cfg) -> RecordingChain | None:
    """The `augment` config group ({name, settings...}) -> the augmentation, or None for
    `name: none` or no group (configs saved before it existed)."""
    if cfg is None:
        return None
    fields = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    name = fields.pop("name", "none")
    if name == "none":
        return None
    if name not in AUGMENTS:
        raise ValueError(f"augment must be none or one of {', '.join(AUGMENTS)}, got {name!r}")
    try:
        return AUGMENTS[name](
            **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
        )
    except TypeError as err:
        raise ValueError(f"augment={name}: {err}") from None
