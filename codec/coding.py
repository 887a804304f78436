"""Whole files through a Codec: windows with context, batching, rates, channels, loudness.

A file is cut into windows that depend only on the file and the settings: chunks of
`chunk_frames` frames, each seen with `context_frames` of real audio (or zeros past the file's
ends) on either side, the last chunk zero-padded. Windows of equal size from any number of files
are stacked into one batch, so a file gets the same codes alone or inside a batch, and memory is
bounded by the window and batch sizes, not the file length.

A causal model instead streams each file chunk by chunk with its layers' state carried over
(files of a batch stream side by side, zero-padded past their ends, which a causal model never
looks back at), so chunked, batched and one-pass coding all give the same codes. A non-causal
model sees only `context_frames` around each chunk: codes near chunk edges can differ from a
one-pass encode, which tests/test_coding.py measures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from codec.audio import apply_gain_db, convert_channels, loudness_gain_db, read_audio, resample
from codec.model import Codec
from codec.nn import streaming


@dataclass(frozen=True)
class Windowing:
    """Chunk and context sizes in frames. The defaults suit speech and music at 24 kHz
    (10 s chunks with 1 s of context each side)."""

    chunk_frames: int = 750
    context_frames: int = 75
    quantum_frames: int = 75  # short files use the fewest quanta that cover them

    def chunk_for(self, frames: int) -> int:
        quanta = math.ceil(frames / self.quantum_frames) * self.quantum_frames
        return max(1, min(self.chunk_frames, quanta))

    @classmethod
    def for_model(cls, model: Codec, chunk_seconds: float = 10.0, context_seconds: float = 1.0):
        rate = model.frame_rate
        return cls(
            chunk_frames=max(1, round(chunk_seconds * rate)),
            context_frames=max(0, round(context_seconds * rate)),
            quantum_frames=max(1, round(rate)),
        )


@dataclass
class PreparedAudio:
    """A file converted for a model: wav (c, t) at the model rate, plus what decode needs."""

    wav: torch.Tensor
    source_rate: int
    source_channels: int
    gains_db: list[float]


def prepare_audio(
    model: Codec, wav: torch.Tensor, rate: int, windowing: Windowing, path="<audio>"
) -> PreparedAudio:
    """Resample to the model rate, map channels by the model's rule, and when the model
    normalises loudness, bring each chunk to the target (gains are kept for decoding)."""
    source_channels = wav.shape[0]
    wav = resample(convert_channels(wav, model.channels, path), rate, model.sample_rate)
    gains: list[float] = []
    target = model.config.loudness_lufs
    if target is not None:
        chunk = windowing.chunk_for(model.frames_for(wav.shape[-1])) * model.hop_length
        pieces = []
        for start in range(0, wav.shape[-1], chunk):
            piece = wav[:, start : start + chunk]
            gains.append(loudness_gain_db(piece, model.sample_rate, target))
            pieces.append(apply_gain_db(piece, gains[-1]))
        wav = torch.cat(pieces, -1)
    return PreparedAudio(wav, rate, source_channels, gains)


def _window(signal: torch.Tensor, start: int, size: int) -> torch.Tensor:
    """signal[..., start : start + size], zero-padded where it runs past either end; copies
    only the window, never the whole signal."""
    lo, hi = max(start, 0), min(start + size, signal.shape[-1])
    piece = signal[..., lo:hi] if hi > lo else signal[..., :0]
    return F.pad(piece, (lo - start, size - (lo - start) - piece.shape[-1]))


def encode_batch(
    model: Codec,
    signals: list[torch.Tensor],
    levels: int,
    windowing: Windowing,
    batch_windows: int = 16,
) -> list[torch.Tensor]:
    """signals: (c, t) each at the model rate -> codes (g, levels, ceil(t / hop)) each.

    Windows of equal size are stacked, at most `batch_windows` at a time."""
    if model.config.causal:
        return _encode_streaming(model, signals, levels, windowing, batch_windows)
    hop, context = model.hop_length, windowing.context_frames
    frames = [model.frames_for(s.shape[-1]) for s in signals]
    result = [None] * len(signals)
    by_chunk: dict[int, list] = {}  # chunk size -> [(signal, window index)]
    for i, n in enumerate(frames):
        chunk = windowing.chunk_for(n)
        by_chunk.setdefault(chunk, []).extend((i, k) for k in range(math.ceil(n / chunk)))
        result[i] = torch.empty(model.groups, levels, n, dtype=torch.long)
    for chunk, items in by_chunk.items():
        size = (chunk + 2 * context) * hop
        for start in range(0, len(items), batch_windows):
            group = items[start : start + batch_windows]
            batch = torch.stack(
                [_window(signals[i], (k * chunk - context) * hop, size) for i, k in group]
            )
            codes = model.encode(batch, levels=levels)[..., context : context + chunk].cpu()
            for (i, k), c in zip(group, codes):
                end = min((k + 1) * chunk, frames[i])
                result[i][..., k * chunk : end] = c[..., : end - k * chunk]
    return result


def _encode_streaming(model, signals, levels, windowing, batch_size):
    hop, chunk = model.hop_length, windowing.chunk_frames
    result = []
    for start in range(0, len(signals), batch_size):
        group = signals[start : start + batch_size]
        frames = [model.frames_for(s.shape[-1]) for s in group]
        codes = torch.empty(len(group), model.groups, levels, max(frames), dtype=torch.long)
        with streaming(model):
            for k in range(0, max(frames), chunk):
                batch = torch.stack([_window(s, k * hop, chunk * hop) for s in group])
                part = model.encode(batch, levels=levels).cpu()
                codes[..., k : k + part.shape[-1]] = part[..., : codes.shape[-1] - k]
        result.extend(c[..., :f] for c, f in zip(codes, frames))
    return result


def decode_codes(
    model: Codec,
    codes: torch.Tensor,
    length: int,
    windowing: Windowing,
    gains_db: Iterable[float] = (),
    batch_windows: int = 16,
) -> torch.Tensor:
    """codes (g, levels, f) -> wav (c, length) at the model rate, windowed like encoding
    (code windows padded with -1, which decodes as silence past the ends), gains undone."""
    hop, frames = model.hop_length, codes.shape[-1]
    wav = torch.empty(model.channels, frames * hop)
    if model.config.causal:
        chunk = windowing.chunk_frames
        with streaming(model):
            for k in range(0, frames, chunk):
                wav[:, k * hop : (k + chunk) * hop] = model.decode(codes[None, ..., k : k + chunk])[
                    0
                ]
    else:
        context, chunk = windowing.context_frames, windowing.chunk_for(frames)
        total = math.ceil(frames / chunk) * chunk
        padded = F.pad(codes, (context, total - frames + context), value=-1)
        windows = padded.unfold(-1, chunk + 2 * context, chunk).permute(2, 0, 1, 3)  # (n, g, q, w)
        for start in range(0, windows.shape[0], batch_windows):
            out = model.decode(windows[start : start + batch_windows].contiguous())
            for k, piece in enumerate(out[..., context * hop : (context + chunk) * hop], start):
                end = min((k + 1) * chunk, frames) * hop
                wav[:, k * chunk * hop : end] = piece[:, : end - k * chunk * hop]
    wav = wav[..., :length]
    gains = list(gains_db)
    if gains:
        step = chunk * hop
        wav = torch.cat(
            [
                apply_gain_db(wav[:, k * step : (k + 1) * step], -gain)
                for k, gain in enumerate(gains)
            ],
            -1,
        )
    return wav


def load_for_model(model: Codec, path, windowing: Windowing) -> PreparedAudio:
    """Read an audio file (any format soundfile reads) and prepare it for `model`."""
    wav, rate = read_audio(path)
    return prepare_audio(model, wav, rate, windowing, path)
