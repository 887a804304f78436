"""Audio in and out: reading (soundfile), rate and channel conversion, loudness (torchaudio),
atomic writing. Every error a user can cause is an `AudioError` that names the file."""

from __future__ import annotations

import errno
import math
import os
import stat
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from codec.fileio import atomic_write
from codec.limits import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

# 400 ms is the gating block of ITU-R BS.1770; shorter signals get no loudness gain.
MIN_LOUDNESS_SECONDS = 0.4


class AudioError(ValueError):
    """A problem with one input or output file; the message starts with the file name."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = str(path), problem


def audio_info(path) -> sf._SoundFileInfo:
    path = Path(path)
    try:
        status = path.stat()
    except OSError as err:  # missing, a dangling or looping link, no permission
        raise AudioError(path, err.strerror.lower() if err.strerror else "cannot be read") from None
    if stat.S_ISDIR(status.st_mode):
        raise AudioError(path, "is a folder, not an audio file")
    if not stat.S_ISREG(status.st_mode):  # a device or a pipe: could be endless
        raise AudioError(path, "not a regular file")
    if status.st_size == 0:
        raise AudioError(path, "empty file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(path, f"not a readable audio file ({err})") from None
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise AudioError(
            path,
            f"unsupported sample rate {info.samplerate} Hz "
            f"(supported: {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE})",
        )
    return info


def read_audio(path, start: int = 0, frames: int = -1) -> tuple[torch.Tensor, int]:
    """Read samples [start, start + frames) of a file -> (wav (channels, samples) float32, rate).

    Refuses files that are missing, empty, unreadable, of an unsupported rate, without samples,
    or with NaN/Inf samples."""
    info = audio_info(path)
    try:
        data, rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise AudioError(path, f"could not decode audio ({err})") from None
    if data.shape[0] == 0:
        problem = "no audio samples" if start == 0 else f"no samples after sample {start}"
        raise AudioError(path, problem + f" (header says {info.frames})")
    if not np.isfinite(data).all():
        raise AudioError(path, "contains NaN or Inf samples")
    return torch.from_numpy(np.ascontiguousarray(data.T)), rate


def read_for(path, rate: int, channels: int, start: int = 0, frames: int = -1) -> torch.Tensor:
    """Samples [start, start + frames) of a file (counted at its own rate), resampled to `rate`
    and mapped to `channels` by the channel rule: (channels, t) float32."""
    wav, source_rate = read_audio(path, start, frames)
    return resample(convert_channels(wav, channels, path), source_rate, rate)


def convert_channels(wav: torch.Tensor, channels: int, path="<audio>") -> torch.Tensor:
    """(c_in, t) -> (channels, t). Rule: a mono model takes the mean of all channels; a stereo
    model duplicates mono and takes stereo as is; anything else is refused."""
    c_in = wav.shape[0]
    if c_in == channels:
        return wav
    if channels == 1:
        return wav.mean(0, keepdim=True)
    if channels == 2 and c_in == 1:
        return wav.expand(2, -1).clone()
    raise AudioError(path, f"cannot map {c_in} channels to a {channels}-channel model")


def resample(wav: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    if rate == target:
        return wav
    return AF.resample(wav, rate, target)


def loudness_gain_db(wav: torch.Tensor, rate: int, target_lufs: float) -> float:
    """Gain (dB) that brings wav (channels, t) to `target_lufs`; 0 for silence or clips too
    short to measure. Clamped to +-40 dB so near-silence is not blown up."""
    if wav.shape[-1] < MIN_LOUDNESS_SECONDS * rate:
        return 0.0
    lufs = float(AF.loudness(wav, rate))
    if not math.isfinite(lufs):
        return 0.0
    return float(min(40.0, max(-40.0, target_lufs - lufs)))


def apply_gain_db(wav: torch.Tensor, gain_db: float) -> torch.Tensor:
    return wav * (10.0 ** (gain_db / 20.0))


def write_audio(path, wav: torch.Tensor, rate: int) -> None:
    """Write wav (channels, t) atomically; the format follows the extension (.wav, .flac)."""
    write_audio_stream(path, [wav], rate, wav.shape[0])


def write_audio_stream(path, pieces: Iterable[torch.Tensor], rate: int, channels: int) -> None:
    """Write pieces (channels, n) one after another into one file, atomically, holding only
    one piece in memory. Samples are clipped to [-1, 1]."""
    fmt = Path(path).suffix.lstrip(".").upper() or "WAV"

    def write(tmp: str) -> None:
        with open(tmp, "w+b", buffering=0) as raw:  # unbuffered: only write() meets the OS
            sink = _KeepsWriteError(raw)
            with sf.SoundFile(sink, "w", rate, channels, format=fmt) as handle:
                for piece in pieces:
                    handle.write(piece.detach().float().clamp(-1.0, 1.0).T.cpu().numpy())
                    if sink.error is not None:
                        break
            if sink.error is not None:
                raise sink.error

    atomic_write(path, write)


class _KeepsWriteError:
    """A file for libsndfile's virtual I/O that keeps the OSError of a failed write: written to
    a path, libsndfile reports a full disk as "System error." with the reason lost. After a
    failure, writes are dropped but reported as done (an exception in libsndfile's callback
    would only be printed, a short count trips an assert in soundfile); the caller raises the
    kept error once libsndfile lets go."""

    def __init__(self, raw):
        self.raw, self.error = raw, None

    def write(self, data) -> int:
        view = memoryview(data)
        while view and self.error is None:
            try:
                written = self.raw.write(view)
            except OSError as err:
                self.error = err
                break
            if not written:  # a regular file takes some bytes or raises; zero means no room
                self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            view = view[written:]
        return len(data)

    def __getattr__(self, name):  # read, seek, tell, flush
        return getattr(self.raw, name)
