"""Reading EnCodec's `.ecdc` files (as written by `encodec.compress(..., use_lm=False)`).

Byte layout (integers big-endian), format version 0 of encodec 0.1.1:

    offset   size  field
    0        4     magic b"ECDC"
    4        1     format version, uint8 (0)
    5        4     header length H, uint32
    9        H     header: UTF-8 JSON {"m": model name, "al": audio length in samples,
                   "nc": number of codebooks, "lm": whether the LM entropy coder was used}
    9 + H    ...   one record per segment, nothing after the last:
                     scale, float32 (only for models that normalise each segment)
                     codes, frames * nc values of 10 bits, frame-major (all codebooks of
                     frame 0, then frame 1, ...), each value packed from the least significant
                     bit up into little-endian bit order, the last byte zero-padded

The header holds no frame counts: they follow from the audio length and the model (its segment
length, stride and hop, in ENCODEC_MODELS), so a file of the wrong size is truncated or has
trailing bytes. Only the plain bit-packed form is read: files that use the LM entropy coder
(`lm: true`) are refused.

Reading trusts nothing: no pickle; the header length is bounded before it is read; every
field is type- and range-checked; the number of segments is bounded by the bytes left before
any is read, and every segment's size is checked before it is unpacked. Every problem raises
`EcdcFormatError` with one line saying what is wrong (and, from a path, which file).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from codec.bounds import rule_broken
from codec.errors import FileError
from codec.fileio import read_regular_file

MAGIC = b"ECDC"
VERSION = 0
MAX_HEADER_BYTES = 1 << 16  # EnCodec writes about 60 bytes of JSON
MAX_FILE_BYTES = 1 << 32  # 24 kbps is 3 kB/s: 4 GiB is about 16 days of audio

_PREFIX = struct.Struct("!4sBI")  # magic, version, header length
_SCALE = struct.Struct("!f")


class EcdcFormatError(FileError):
    """Bytes that are not an .ecdc file this toolkit reads; the message says what is wrong (and
    names the file when one was read)."""


@dataclass(frozen=True)
class EncodecLayout:
    """What an EnCodec model's name fixes about its .ecdc files."""

    sample_rate: int
    channels: int
    hop_length: int  # samples per frame of codes
    max_codebooks: int  # the model's n_q
    bits_per_code: int  # log2 of the codebook size
    segment_length: int | None  # samples per segment; None: the whole file is one segment
    segment_stride: int | None  # samples between segment starts
    normalize: bool  # each segment stores its float32 scale before its codes

    def segment_lengths(self, audio_length: int) -> list[int]:
        """Samples of each segment of `audio_length` samples, the way EncodecModel.encode cuts
        them (the last one may be shorter)."""
        if self.segment_length is None:
            return [audio_length]
        return [
            min(self.segment_length, audio_length - start)
            for start in range(0, audio_length, self.segment_stride)
        ]

    def frames(self, segment_length: int) -> int:
        """Frames of codes the encoder gives for `segment_length` samples: ceil(len / hop)."""
        return -(-segment_length // self.hop_length)

    def num_segments(self, audio_length: int) -> int:
        if self.segment_length is None:
            return 1
        return -(-audio_length // self.segment_stride)


# From encodec 0.1.1's EncodecModel.encodec_model_24khz / _48khz: SEANet ratios [8, 5, 4, 2]
# (hop 320), 1024-code codebooks, n_q = 32 (24 kbps at 75 Hz) and 16 (24 kbps at 150 Hz); the
# 48 kHz model cuts 1 s segments advancing by int(0.99 * 48000) samples and normalises each.
ENCODEC_MODELS: dict[str, EncodecLayout] = {
    "encodec_24khz": EncodecLayout(
        sample_rate=24000,
        channels=1,
        hop_length=320,
        max_codebooks=32,
        bits_per_code=10,
        segment_length=None,
        segment_stride=None,
        normalize=False,
    ),
    "encodec_48khz": EncodecLayout(
        sample_rate=48000,
        channels=2,
        hop_length=320,
        max_codebooks=16,
        bits_per_code=10,
        segment_length=48000,
        segment_stride=47520,
        normalize=True,
    ),
}


class EcdcSegment(NamedTuple):
    codes: torch.Tensor  # int64 (1, num_codebooks, frames)
    scale: float | None  # the segment's scale (normalising models), else None


@dataclass
class EcdcFile:
    """The contents of an .ecdc file; `segments` in EncodecModel.encode's order."""

    model_name: str  # a key of ENCODEC_MODELS
    audio_length: int  # samples per channel of the original audio
    num_codebooks: int
    segments: list[EcdcSegment]

    @property
    def layout(self) -> EncodecLayout:
        return ENCODEC_MODELS[self.model_name]

    @property
    def sample_rate(self) -> int:
        return self.layout.sample_rate


def ecdc_as_codes(ecdc: EcdcFile):
    """The file's codes in this toolkit's layout, (groups 1, levels, frames) with the segments
    end to end (codec.models.segments), and a CodesHeader for them: no weights hash (an .ecdc
    file names its model only), each segment's scale as the gain it got, -20 log10(scale) dB."""
    from codec.codes_file import CodesHeader
    from codec.models.segments import gains_db

    layout = ecdc.layout
    codes = torch.cat([segment.codes for segment in ecdc.segments], -1)  # (1, levels, frames)
    gains = None
    if layout.normalize:
        gains = gains_db(segment.scale for segment in ecdc.segments)
    header = CodesHeader(
        model_id=ecdc.model_name,
        weights_hash="",
        sample_rate=layout.sample_rate,
        channels=layout.channels,
        length=ecdc.audio_length,
        frame_rate=layout.sample_rate / layout.hop_length,
        groups=1,
        levels=ecdc.num_codebooks,
        codebook_size=2**layout.bits_per_code,
        frames=codes.shape[-1],
        gains=gains,
    )
    return codes, header


def read_ecdc(source) -> EcdcFile:
    """Read an .ecdc file from a path, or from its bytes (bytes, bytearray, memoryview).

    Every problem, including an unreadable or non-regular file, raises EcdcFormatError naming
    the file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_ecdc_bytes(source)
    path = Path(source)
    try:
        return decode_ecdc_bytes(read_regular_file(path, MAX_FILE_BYTES, EcdcFormatError))
    except EcdcFormatError as err:
        raise EcdcFormatError.in_file(path, err) from None
    except OSError as err:
        raise EcdcFormatError.in_file(path, f"cannot read ({err.strerror or err})") from None


def decode_ecdc_bytes(data) -> EcdcFile:
    """Parse the bytes of an .ecdc file (see the module docstring for the layout)."""
    data = memoryview(data).cast("B")
    if len(data) < _PREFIX.size:
        if bytes(data[: len(MAGIC)]) != MAGIC[: len(data)]:
            raise EcdcFormatError("not an .ecdc file (wrong magic bytes)")
        raise EcdcFormatError(
            f"truncated: {len(data)} bytes, shorter than the {_PREFIX.size}-byte prefix"
        )
    magic, version, header_bytes = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise EcdcFormatError(f"not an .ecdc file (magic bytes {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise EcdcFormatError(f"unsupported .ecdc version {version} (this reader knows {VERSION})")
    if header_bytes > MAX_HEADER_BYTES:
        raise EcdcFormatError(
            f"header length {header_bytes} is over the limit of {MAX_HEADER_BYTES}"
        )
    end = _PREFIX.size + header_bytes
    if len(data) < end:
        raise EcdcFormatError(
            f"truncated: the header needs {header_bytes} bytes, {len(data) - _PREFIX.size} left"
        )
    model_name, audio_length, num_codebooks = _parse_header(bytes(data[_PREFIX.size : end]))
    layout = ENCODEC_MODELS[model_name]
    segments = _read_segments(data, end, layout, audio_length, num_codebooks)
    return EcdcFile(model_name, audio_length, num_codebooks, segments)


def _parse_header(raw: bytes) -> tuple[str, int, int]:
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError
        message = str(err) if not isinstance(err, RecursionError) else "nested too deeply"
        raise EcdcFormatError(f"header is not valid JSON: {message[:200]}") from None
    if not isinstance(header, dict):
        raise EcdcFormatError(f"header is a JSON {type(header).__name__}, not an object")
    missing = [key for key in ("m", "al", "nc", "lm") if key not in header]
    if missing:
        raise EcdcFormatError(f"header lacks the field(s) {', '.join(missing)}")
    model_name, audio_length, num_codebooks, use_lm = (header[k] for k in ("m", "al", "nc", "lm"))
    if (rule := rule_broken(bool, use_lm)) is not None:
        raise EcdcFormatError(f"header field lm must be {rule}, got {_short(use_lm)}")
    if use_lm:
        raise EcdcFormatError(
            "the file uses the LM entropy coder, which this toolkit does not read "
            "(compress with use_lm=False)"
        )
    if not isinstance(model_name, str) or model_name not in ENCODEC_MODELS:
        raise EcdcFormatError(
            f"model {_short(model_name)} is not one of {', '.join(ENCODEC_MODELS)}"
        )
    if (rule := rule_broken(int, audio_length, range=(1, None))) is not None:
        raise EcdcFormatError(f"audio length al must be {rule}, got {_short(audio_length)}")
    codebooks = (1, ENCODEC_MODELS[model_name].max_codebooks)
    if (rule := rule_broken(int, num_codebooks, range=codebooks)) is not None:
        raise EcdcFormatError(
            f"number of codebooks nc must be {rule} for {model_name}, got {_short(num_codebooks)}"
        )
    return model_name, audio_length, num_codebooks


def _read_segments(
    data: memoryview, offset: int, layout: EncodecLayout, audio_length: int, num_codebooks: int
) -> list[EcdcSegment]:
    left = len(data) - offset
    scale_bytes = _SCALE.size if layout.normalize else 0
    # Every segment holds at least one frame, so at least one byte of codes: this bounds the
    # number of segments by the file's size before a list of them is made.
    num_segments = layout.num_segments(audio_length)
    if num_segments * (scale_bytes + 1) > left:
        raise EcdcFormatError(
            f"truncated: audio length {audio_length} needs {num_segments} segments, "
            f"and the {left} bytes after the header cannot hold them"
        )
    segments = []
    for index, length in enumerate(layout.segment_lengths(audio_length)):
        frames = layout.frames(length)
        code_bytes = (frames * num_codebooks * layout.bits_per_code + 7) // 8
        needed = scale_bytes + code_bytes
        if len(data) - offset < needed:
            raise EcdcFormatError(
                f"truncated: segment {index} of {num_segments} ({frames} frames of "
                f"{num_codebooks} codes) needs {needed} bytes, {len(data) - offset} left"
            )
        scale = None
        if layout.normalize:
            (scale,) = _SCALE.unpack_from(data, offset)
            if not (math.isfinite(scale) and scale > 0):
                raise EcdcFormatError(f"segment {index} has scale {scale}, not a positive number")
        start = offset + scale_bytes
        values = unpack_lsb_first(data[start : start + code_bytes], layout.bits_per_code)
        codes = values[: frames * num_codebooks].reshape(frames, num_codebooks).T
        segments.append(EcdcSegment(torch.from_numpy(codes.copy())[None], scale))
        offset += needed
    if offset != len(data):
        raise EcdcFormatError(
            f"{len(data) - offset} bytes after the last segment: audio length {audio_length} "
            f"gives {num_segments} segment(s) ending at byte {offset}"
        )
    return segments


def unpack_lsb_first(data, bits: int) -> np.ndarray:
    """Values of `bits` (1..16) bits packed the way encodec.binary.BitPacker packs them: the
    first value in the lowest bits of the first byte, each next one above it.

    Returns int64 (floor(len(data) * 8 / bits),): every whole value the bytes hold."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in [1, 16], got {bits}")
    raw = np.frombuffer(data, dtype=np.uint8)
    count = raw.size * 8 // bits
    # A value starts at bit i * bits and, with at most 7 bits of offset into its first byte,
    # ends within three bytes: read those as one little-endian word and shift it out.
    padded = np.zeros(raw.size + 2, dtype=np.int64)
    padded[: raw.size] = raw
    first_bit = np.arange(count, dtype=np.int64) * bits
    byte = first_bit >> 3
    word = padded[byte] | (padded[byte + 1] << 8) | (padded[byte + 2] << 16)
    return (word >> (first_bit & 7)) & ((1 << bits) - 1)


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _reject_constant(name):
    raise ValueError(f"non-standard constant {name}")
