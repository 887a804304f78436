"""The bad-input corpus: files a codec toolkit meets in the wild, made on the spot.

make_corpus(folder, speech) writes each case as a file and returns {name: expected outcome},
where the outcome is "ok" (coded correctly) or the phrase the one-line error must contain.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf

# name -> (what it is, expected outcome for encode/eval: "ok" or part of the error line)
CASES = {
    "empty.wav": ("0-byte file", "empty file"),
    "header_only.wav": ("WAV header, no samples", "no audio samples"),
    "truncated.wav": ("WAV cut in the middle of its data", "ok"),
    "cut.flac": ("FLAC cut in the middle", "could not decode audio"),
    "wrong_extension.flac": ("a WAV file named .flac", "ok"),
    "text.wav": ("a text file named .wav", "not a readable audio file"),
    "nan.wav": ("float WAV with NaN samples", "NaN or Inf"),
    "inf.wav": ("float WAV with Inf samples", "NaN or Inf"),
    "one_sample.wav": ("1 sample", "ok"),
    "rate8k.wav": ("real speech at 8 kHz", "ok"),
    "rate192k.wav": ("192 kHz audio", "ok"),
    "six_channels.wav": ("5.1 audio", "ok"),
    "header_lie.wav": ("header claims 2^31 samples, file holds 1000", "ok"),  # 1000 read
    "silence.wav": ("1 s of digital silence", "ok"),
    "clipping.wav": ("full-scale clipped square wave", "ok"),
}


def _wav_header(frames: int, rate: int = 16000, channels: int = 1) -> bytes:
    data = frames * 2 * channels
    return (
        b"RIFF"
        + struct.pack("<I", (36 + data) & 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
        + b"data"
        + struct.pack("<I", data & 0xFFFFFFFF)
    )


def make_corpus(folder: Path, speech: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    voice, rate = sf.read(speech, dtype="float32")
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "header_only.wav").write_bytes(_wav_header(0))
    sf.write(folder / "full.wav", tone, 16000, subtype="PCM_16")
    full = (folder / "full.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(full[: len(full) // 2])
    sf.write(folder / "full.flac", tone, 16000)
    flac = (folder / "full.flac").read_bytes()
    (folder / "cut.flac").write_bytes(flac[: len(flac) // 2])
    (folder / "full.wav").unlink()
    (folder / "full.flac").unlink()
    sf.write(folder / "wrong_extension.flac", tone, 16000, format="WAV", subtype="PCM_16")
    (folder / "text.wav").write_text("these are not the samples you are looking for\n" * 20)
    for name, bad in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        samples = tone.copy()
        samples[1234] = bad
        sf.write(folder / name, samples, 16000, subtype="FLOAT")
    sf.write(folder / "one_sample.wav", np.array([0.25], dtype=np.float32), 16000)
    sf.write(folder / "rate8k.wav", voice, rate)
    sf.write(folder / "rate192k.wav", np.repeat(tone[:4000], 12) * 0.5, 192000)
    sf.write(folder / "six_channels.wav", np.stack([tone] * 6, axis=1) / 6, 16000)
    lie = _wav_header(2**31 - 1) + (tone[:1000] * 32767).astype("<i2").tobytes()
    (folder / "header_lie.wav").write_bytes(lie)
    sf.write(folder / "silence.wav", np.zeros(16000, dtype=np.float32), 16000)
    square = np.sign(np.sin(2 * np.pi * 110 * t)).astype(np.float32)
    sf.write(folder / "clipping.wav", square, 16000, subtype="FLOAT")
    return {name: outcome for name, (_, outcome) in CASES.items()}
