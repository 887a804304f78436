"""Whole files through a Codec: windows, batching, rates, channels, loudness, bounded memory.

A non-causal model codes a file in windows that depend only on the file and the settings:
chunks of `chunk_frames` frames, each seen with `context_frames` of real audio (zeros past the
file's ends) on either side, the last chunk zero-padded. Windows of equal size from any number
of files are stacked into one batch, so a file gets the same codes alone or inside a batch.
Codes near chunk edges can differ from a one-pass encode of the whole file (measured in
tests/models/test_codec.py); away from the edges they are the same.

A causal model streams each file chunk by chunk with its layers' state carried over (files of a
batch side by side, zero-padded past their ends, which a causal model never looks back at), so
chunked, batched and one-pass coding all give the same codes.

Memory is bounded by the window and batch sizes, not the file length: a file already at the
model's rate (and without loudness normalisation) is read window by window from disk, and
decoding yields audio chunk by chunk for the writer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from codec.audio import (
    AudioError,
    apply_gain_db,
    audio_info,
    convert_channels,
    loudness_gain_db,
    read_audio,
    resample,
)
from codec.codes_file import CodesHeader
from codec.models import Codec
from codec.models.segments import gains_db, scales_from_gains

MAX_BATCH_SECONDS = 12.0  # audio per forward pass; bounds activation memory


@dataclass(frozen=True)
class Windowing:
    """Chunk and context sizes in frames; short files use the fewest `quantum_frames` that
    cover them instead of a whole chunk."""

    chunk_frames: int
    context_frames: int
    quantum_frames: int

    def chunk_for(self, frames: int) -> int:
        quanta = math.ceil(frames / self.quantum_frames) * self.quantum_frames
        return max(1, min(self.chunk_frames, quanta))

    @classmethod
    def for_model(
        cls, model: Codec, chunk_seconds: float | None = None, context_seconds: float | None = None
    ) -> Windowing:
        """Defaults: a causal model streams 1 s chunks (state carries the history, so small
        chunks cost nothing); a non-causal one uses 5 s chunks with 0.5 s of context."""
        causal = model.causal
        chunk_seconds = chunk_seconds or (1.0 if causal else 5.0)
        context_seconds = 0.0 if causal else (0.5 if context_seconds is None else context_seconds)
        rate = model.frame_rate
        return cls(
            chunk_frames=max(1, round(chunk_seconds * rate)),
            context_frames=max(0, round(context_seconds * rate)),
            quantum_frames=max(1, round(rate)),
        )


class FileSource:
    """A file already at the model's rate, read window by window from disk. shape: (c, t)."""

    def __init__(self, path, channels: int, info: sf._SoundFileInfo):
        self.path, self.channels, self.shape = path, channels, (channels, info.frames)
        if info.subtype in ("FLOAT", "DOUBLE"):  # integer PCM cannot hold NaN or Inf
            with sf.SoundFile(str(path)) as handle:
                for block in handle.blocks(blocksize=1 << 20, dtype="float32"):
                    if not np.isfinite(block).all():
                        raise AudioError(path, "contains NaN or Inf samples")

    def window(self, start: int, size: int) -> torch.Tensor:
        """Samples [start, start + size), zero where outside the file: (c, size)."""
        lo, hi = max(start, 0), min(start + size, self.shape[1])
        out = torch.zeros(self.channels, size)
        if hi > lo:
            try:
                with sf.SoundFile(str(self.path)) as handle:
                    handle.seek(lo)
                    data = handle.read(hi - lo, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, ValueError) as err:
                raise AudioError(self.path, f"could not decode audio ({err})") from None
            piece = convert_channels(torch.from_numpy(data.T.copy()), self.channels, self.path)
            out[:, lo - start : lo - start + piece.shape[-1]] = piece
        return out


@dataclass
class PreparedAudio:
    """A file made ready for a model: samples at the model rate (a tensor (c, t) or a
    FileSource), plus what decoding needs."""

    wav: torch.Tensor | FileSource
    source_rate: int
    source_channels: int
    gains_db: list[float]

    @property
    def length(self) -> int:
        return self.wav.shape[-1]


def prepare_audio(
    model: Codec, wav: torch.Tensor, rate: int, windowing: Windowing, path="<audio>"
) -> PreparedAudio:
    """Resample to the model rate, map channels by the model's rule, and when the model
    normalises loudness, bring each chunk to the target (gains are kept for decoding)."""
    source_channels = wav.shape[0]
    wav = resample(convert_channels(wav, model.channels, path), rate, model.sample_rate)
    gains: list[float] = []
    target = model.config.loudness_lufs
    scales = model.segment_scales(wav[None])
    if scales is not None:  # kept as the gain each segment got
        gains = gains_db(scales[0].double())
    elif target is not None:
        chunk = windowing.chunk_for(model.frames_for(wav.shape[-1])) * model.hop_length
        pieces = []
        for start in range(0, wav.shape[-1], chunk):
            piece = wav[:, start : start + chunk]
            gains.append(loudness_gain_db(piece, model.sample_rate, target))
            pieces.append(apply_gain_db(piece, gains[-1]))
        wav = torch.cat(pieces, -1)
    return PreparedAudio(wav, rate, source_channels, gains)


def load_for_model(model: Codec, path, windowing: Windowing) -> PreparedAudio:
    """Open an audio file (any format soundfile reads) for `model`: read from disk as needed
    when no conversion is required, else read whole and converted."""
    info = audio_info(path)
    if info.frames == 0:
        raise AudioError(path, "no audio samples")
    direct = model.config.loudness_lufs is None and model.segmentation is None
    if info.samplerate == model.sample_rate and direct:
        convert_channels(torch.zeros(info.channels, 1), model.channels, path)  # rule check
        return PreparedAudio(
            FileSource(path, model.channels, info), info.samplerate, info.channels, []
        )
    wav, rate = read_audio(path)
    return prepare_audio(model, wav, rate, windowing, path)


def _window(signal, start: int, size: int) -> torch.Tensor:
    """signal[..., start : start + size], zero-padded past either end; copies only the window."""
    if isinstance(signal, FileSource):
        return signal.window(start, size)
    lo, hi = max(start, 0), min(start + size, signal.shape[-1])
    piece = signal[..., lo:hi] if hi > lo else signal[..., :0]
    return F.pad(piece, (lo - start, size - (lo - start) - piece.shape[-1]))


def _per_batch(model: Codec, window_samples: int) -> int:
    return max(1, int(MAX_BATCH_SECONDS * model.sample_rate) // window_samples)


def encode_batch(model: Codec, signals: list, levels: int, windowing: Windowing) -> list:
    """signals: (c, t) tensors or FileSources at the model rate -> codes (g, levels,
    ceil(t / hop)) each, int64 on the CPU."""
    if model.segmentation is not None:
        return _encode_segmented(model, signals, levels)
    if model.causal:
        return _encode_streaming(model, signals, levels, windowing)
    hop, context = model.hop_length, windowing.context_frames
    device = next(model.parameters()).device
    frames = [model.frames_for(s.shape[-1]) for s in signals]
    result = []
    by_chunk: dict[int, list] = {}  # chunk size -> [(signal, window index)]
    for i, n in enumerate(frames):
        chunk = windowing.chunk_for(n)
        by_chunk.setdefault(chunk, []).extend((i, k) for k in range(math.ceil(n / chunk)))
        result.append(torch.empty(model.groups, levels, n, dtype=torch.long))
    for chunk, items in by_chunk.items():
        size = (chunk + 2 * context) * hop
        step = _per_batch(model, size)
        for start in range(0, len(items), step):
            group = items[start : start + step]
            batch = torch.stack(
                [_window(signals[i], (k * chunk - context) * hop, size) for i, k in group]
            )
            codes = model.encode(batch.to(device), levels=levels)
            codes = codes[..., context : context + chunk].cpu()
            for (i, k), c in zip(group, codes):
                end = min((k + 1) * chunk, frames[i])
                result[i][..., k * chunk : end] = c[..., : end - k * chunk]
    return result


def encode_each(model: Codec, signals: list, levels: int, windowing: Windowing) -> list:
    """encode_batch under inference mode, but a file that fails while being read (truncated,
    damaged) costs only itself: the batch is retried file by file, and each failure comes back
    as its AudioError in place of codes."""
    with torch.inference_mode():
        try:
            return encode_batch(model, signals, levels, windowing)
        except AudioError as err:
            if len(signals) == 1:
                return [err]
        return [encode_each(model, [signal], levels, windowing)[0] for signal in signals]


def _encode_segmented(model: Codec, signals: list, levels: int) -> list:
    """A segmented model (EnCodec 48 kHz) codes each file whole, segment by segment."""
    device = next(model.parameters()).device
    out = []
    for signal in signals:
        wav = _window(signal, 0, signal.shape[-1])
        out.append(model.encode(wav[None].to(device), levels=levels)[0].cpu())
    return out


def encode_files(
    model: Codec, paths: list, levels: int, windowing: Windowing, batch_size: int
) -> Iterator[tuple[PreparedAudio | None, torch.Tensor | AudioError]]:
    """Read and encode files `batch_size` at a time, yielding (audio, codes (g, levels, f)) for
    each path, in order. A file that cannot be read or coded yields its AudioError in place of
    the codes (and None for the audio when reading failed); the others are unaffected."""
    for start in range(0, len(paths), batch_size):
        loaded: list[PreparedAudio | AudioError] = []
        for path in paths[start : start + batch_size]:
            try:
                loaded.append(load_for_model(model, path, windowing))
            except AudioError as err:
                loaded.append(err)
        ready = [audio.wav for audio in loaded if isinstance(audio, PreparedAudio)]
        coded = iter(encode_each(model, ready, levels, windowing) if ready else [])
        for audio in loaded:
            if isinstance(audio, AudioError):
                yield None, audio
            else:
                yield audio, next(coded)


def _encode_streaming(model: Codec, signals: list, levels: int, windowing: Windowing) -> list:
    """Files side by side, zero-padded past their ends; a model that pads by reflection (as
    EnCodec's) streams each file alone, its last chunk as long as what is left, which its
    layers pad as the offline pass does."""
    hop, chunk = model.hop_length, windowing.chunk_frames
    device = next(model.parameters()).device
    alone = model.encoder.pad_mode == "reflect"  # a file's end is padded by its reflection
    per_batch = 1 if alone else _per_batch(model, chunk * hop)
    result = []
    for start in range(0, len(signals), per_batch):
        group = signals[start : start + per_batch]
        frames = [model.frames_for(s.shape[-1]) for s in group]
        codes = torch.empty(len(group), model.groups, levels, max(frames), dtype=torch.long)
        with model.streaming(batch_size=len(group)):
            for k in range(0, max(frames), chunk):
                size = chunk * hop
                if alone:
                    size = min(size, group[0].shape[-1] - k * hop)
                batch = torch.stack([_window(s, k * hop, size) for s in group])
                part = model.encode(batch.to(device), levels=levels).cpu()
                codes[..., k : k + part.shape[-1]] = part[..., : codes.shape[-1] - k]
        result.extend(c[..., :f] for c, f in zip(codes, frames))
    return result


def model_header_fields(model: Codec, levels: int) -> dict:
    """The header fields that depend only on the model and the number of levels: which model
    (id and weights hash), its rates and channels, and the shape of a frame of codes. Shared by
    every .codes file and the meta.json of token shards made with these settings."""
    return {
        "model_id": model.config.model_id,
        "weights_hash": model.model_hash,
        "sample_rate": model.sample_rate,
        "channels": model.channels,
        "frame_rate": model.frame_rate,
        "groups": model.groups,
        "levels": levels,
        "codebook_size": model.codebook_size,
    }


def codes_header(
    model: Codec, audio: PreparedAudio, codes: torch.Tensor, windowing: Windowing
) -> CodesHeader:
    """The .codes header for `codes` (g, levels, f) of `audio`: enough to decode them with the
    same model and windowing and to restore loudness."""
    return CodesHeader(
        **model_header_fields(model, codes.shape[1]),
        length=audio.length,
        frames=codes.shape[-1],
        gains=audio.gains_db,
        extra={
            "source_sample_rate": audio.source_rate,
            "source_channels": audio.source_channels,
            "chunk_frames": windowing.chunk_frames,
            "context_frames": windowing.context_frames,
            "quantum_frames": windowing.quantum_frames,
        },
    )


def windowing_of(model: Codec, header: CodesHeader) -> Windowing:
    """The windowing a .codes file was made with (the model's default if not recorded)."""
    default, extra = Windowing.for_model(model), header.extra or {}
    return Windowing(
        int(extra.get("chunk_frames", default.chunk_frames)),
        int(extra.get("context_frames", default.context_frames)),
        int(extra.get("quantum_frames", default.quantum_frames)),
    )


def decode_chunks(
    model: Codec,
    codes: torch.Tensor,
    length: int,
    windowing: Windowing,
    gains_db: Iterable[float] = (),
) -> Iterator[torch.Tensor]:
    """codes (g, levels, f) -> audio (c, n) pieces at the model rate, in order, `length`
    samples in all, windowed like encoding (code windows padded with -1, which decodes as
    silence past the ends), loudness gains undone. Memory does not grow with the file."""
    hop, frames = model.hop_length, codes.shape[-1]
    device = next(model.parameters()).device
    gains = list(gains_db)
    if model.segmentation is not None:  # segments overlap-add: decoded whole, scales applied
        scales = scales_from_gains(gains) if gains else None
        yield model.decode(codes[None].to(device), length, scales=scales)[0].cpu()
        return
    chunk = windowing.chunk_for(frames) if not model.causal else windowing.chunk_frames
    emitted = 0

    def finish(index: int, wav: torch.Tensor) -> torch.Tensor:
        nonlocal emitted
        wav = wav[:, : max(0, length - emitted)].cpu()
        emitted += wav.shape[-1]
        return apply_gain_db(wav, -gains[index]) if index < len(gains) else wav

    if model.causal:
        with model.streaming():
            for index, k in enumerate(range(0, frames, chunk)):
                yield finish(index, model.decode(codes[None, ..., k : k + chunk].to(device))[0])
        return
    context = windowing.context_frames
    total = math.ceil(frames / chunk) * chunk
    padded = F.pad(codes, (context, total - frames + context), value=-1)
    windows = padded.unfold(-1, chunk + 2 * context, chunk).permute(2, 0, 1, 3)  # (n, g, q, w)
    step = _per_batch(model, (chunk + 2 * context) * hop)
    for start in range(0, windows.shape[0], step):
        out = model.decode(windows[start : start + step].contiguous().to(device))
        for index, piece in enumerate(out[..., context * hop : (context + chunk) * hop], start):
            yield finish(index, piece)


def decode_codes(model: Codec, codes, length: int, windowing: Windowing, gains_db=()):
    """As decode_chunks, joined: wav (c, length)."""
    return torch.cat(list(decode_chunks(model, codes, length, windowing, gains_db)), -1)
