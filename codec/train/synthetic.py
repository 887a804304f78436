"""The demo corpus: deterministic synthetic audio, generated where no recordings are needed
(`data=demo`, the demo recipe, benchmarks and tests).

Three kinds of clip in turn: speech-like voiced syllables (a harmonic source under moving
formants, with noise bursts for fricatives), melodies of harmonic notes, and coloured noise
textures with crackles. Clip `index` of `seed` is the same on every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF

from codec.audio import write_audio

# (F1, F2, F3) in Hz of a few vowels, for speech-like formant trajectories.
VOWELS = np.array(
    [[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410]],
    dtype=np.float64,
)


def _smooth_walk(rng, n: int, points: int, low: float, high: float) -> np.ndarray:
    """A smooth random contour of n samples through `points` random values in [low, high]."""
    knots = rng.uniform(low, high, size=points)
    return np.interp(np.linspace(0, points - 1, n), np.arange(points), knots)


def _speech_like(rng, n: int, rate: int) -> np.ndarray:
    """Voiced syllables: a harmonic source with a moving pitch shaped by moving formants,
    syllable envelopes, and short noise bursts standing in for fricatives."""
    t = np.arange(n) / rate
    seconds = n / rate
    f0 = _smooth_walk(rng, n, max(2, int(seconds * 3)), rng.uniform(85, 140), rng.uniform(160, 260))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    vowel_track = rng.integers(len(VOWELS), size=max(2, int(seconds * 4)))
    formants = np.stack(
        [
            np.interp(
                np.linspace(0, len(vowel_track) - 1, n),
                np.arange(len(vowel_track)),
                VOWELS[vowel_track, k],
            )
            for k in range(3)
        ]
    )
    out = np.zeros(n)
    for k in range(1, int(min(rate / 2 - 200, 4000) / 85)):
        freq = k * f0
        gain = sum(
            1.0 / (1.0 + ((freq - formants[j]) / (60 + 40 * j)) ** 2) / (j + 1) for j in range(3)
        )
        out += np.where(freq < rate / 2 - 100, gain, 0.0) * np.sin(k * phase) / k**0.5
    syllable = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None)
    out *= syllable**0.7
    noise = rng.standard_normal(n)
    noise = np.diff(noise, prepend=0.0)  # tilt towards high frequencies, like /s/
    bursts = np.clip(-np.sin(2 * np.pi * rng.uniform(1, 2) * t + rng.uniform(0, 6)) - 0.7, 0, None)
    return out / (np.abs(out).max() + 1e-9) + 0.5 * noise * bursts


def _notes(rng, n: int, rate: int) -> np.ndarray:
    """A melody of harmonic notes with attack-decay envelopes and a random spectral tilt."""
    out, pos = np.zeros(n), 0
    tilt = rng.uniform(0.8, 2.0)
    while pos < n:
        length = int(rate * rng.uniform(0.15, 0.6))
        f0 = 110.0 * 2 ** (rng.integers(0, 30) / 12)
        t = np.arange(min(length, n - pos)) / rate
        envelope = (1 - np.exp(-t / 0.005)) * np.exp(-t / rng.uniform(0.1, 0.5))
        tone = sum(
            np.sin(2 * np.pi * k * f0 * t * (1 + 0.0005 * k**2) + rng.uniform(0, 6)) / k**tilt
            for k in range(1, 16)
            if k * f0 < rate / 2 - 100
        )
        out[pos : pos + len(t)] += envelope * tone
        pos += len(t)
    return out


def _noise_texture(rng, n: int, rate: int) -> np.ndarray:
    """Coloured noise (white to brown) under a slow random loudness contour, with crackles."""
    alpha = rng.uniform(0.0, 0.98)
    white = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    colored = AF.lfilter(
        white,
        torch.tensor([1.0, -alpha], dtype=torch.float32),
        torch.tensor([1.0 - alpha, 0.0], dtype=torch.float32),
        clamp=False,
    ).numpy()
    colored /= np.abs(colored).max() + 1e-9
    crackle = (rng.random(n) < 20 / rate) * rng.uniform(-1, 1, n)
    return colored * _smooth_walk(rng, n, 6, 0.2, 1.0) + crackle


KINDS = (_speech_like, _notes, _noise_texture)


def make_demo_clip(index: int, seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Clip `index` of the demo corpus: (samples,) float32 peaking at 0.3-0.9."""
    rng = np.random.default_rng([seed, index])
    n = int(round(seconds * sample_rate))
    clip = KINDS[index % len(KINDS)](rng, n, sample_rate)
    clip *= rng.uniform(0.3, 0.9) / (np.abs(clip).max() + 1e-9)
    return clip.astype(np.float32)


def make_demo_corpus(
    root: Path, count: int, seconds: float, sample_rate: int, seed: int = 0
) -> Path:
    """Write `count` deterministic clips (speech-like, notes, noise textures in turn) as 16-bit
    wavs into `root`. The folder appears whole or not at all (built aside, then renamed)."""
    root = Path(root)
    building = root.with_name(f".{root.name}.building")
    building.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        kind = KINDS[index % len(KINDS)].__name__.strip("_")
        path = building / f"{index:04d}_{kind}.wav"
        if not path.exists():
            clip = torch.from_numpy(make_demo_clip(index, seconds, sample_rate, seed))[None]
            write_audio(path, clip, sample_rate)
    building.rename(root)
    return root
