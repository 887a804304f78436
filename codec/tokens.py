"""The `.codes` container: codes of one file, bit-packed, with a header and a checksum.

Byte layout (all integers little-endian):

    offset      size  field
    0           6     magic b"CODECS"
    6           2     format version, uint16 (1)
    8           4     header length H, uint32 (at most MAX_HEADER_BYTES)
    12          H     header, UTF-8 JSON object (see CodesHeader)
    12 + H      P     codes, bit-packed at ceil(log2(codebook_size)) bits each, MSB first,
                      P = ceil(frames * levels * groups * bits / 8)
    12 + H + P  4     CRC32 (zlib) of every byte before it, uint32

Pack order: frame-major, then level, then group (k = level * groups + group within a frame),
the order a language model reads tokens in. Reading trusts nothing: every length is bounded
by the bytes actually present before anything is allocated, every header field is type- and
range-checked, and every problem raises `CodesFormatError` saying what is wrong. No pickle.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from codec.fileio import atomic_write_bytes

MAGIC = b"CODECS"
VERSION = 1
MAX_HEADER_BYTES = 1 << 20
MAX_CODES = 1 << 32
MAX_FILE_BYTES = 1 << 34
_PREFIX = struct.Struct("<6sHI")
_CRC = struct.Struct("<I")
_PACK_CHUNK = 1 << 20  # codes per packing step; a multiple of 8 keeps steps byte-aligned


class CodesFormatError(ValueError):
    """A .codes file (or bytes) that cannot be read; the message says what is wrong."""


class ModelMismatchError(CodesFormatError):
    """Codes made by a different model than the one asked to decode them."""


@dataclass
class CodesHeader:
    model_id: str
    weights_hash: str
    sample_rate: int
    channels: int
    length: int  # samples at sample_rate
    frame_rate: float
    groups: int
    levels: int
    codebook_size: int
    frames: int = 0
    gains: list[float] | None = None  # per-chunk loudness gains in dB, undone on decode
    extra: dict = field(default_factory=dict)
    version: int = VERSION

    @property
    def bits(self) -> int:
        return bits_per_code(self.codebook_size)

    @property
    def bitrate(self) -> float:
        """Bits per second of the stored codes."""
        return self.frame_rate * self.groups * self.levels * self.bits

    @property
    def duration(self) -> float:
        return self.length / self.sample_rate

    @property
    def num_codes(self) -> int:
        return self.groups * self.levels * self.frames


def bits_per_code(codebook_size: int) -> int:
    return max(1, math.ceil(math.log2(codebook_size)))


# -- bit packing ------------------------------------------------------------------------------


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Non-negative integers (n,) below 2**bits -> ceil(n * bits / 8) bytes, MSB first."""
    values = np.asarray(values, dtype=np.uint64).reshape(-1)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint64)
    out = []
    for start in range(0, values.size, _PACK_CHUNK):
        part = values[start : start + _PACK_CHUNK]
        matrix = ((part[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        out.append(np.packbits(matrix.reshape(-1)).tobytes())
    return b"".join(out)


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of pack_bits: the first `count` values, int64."""
    if len(data) * 8 < count * bits:
        raise CodesFormatError(f"payload holds {len(data) * 8} bits, {count * bits} needed")
    raw = np.frombuffer(data, dtype=np.uint8)
    weights = (np.uint64(1) << np.arange(bits - 1, -1, -1, dtype=np.uint64)).astype(np.uint64)
    out = np.empty(count, dtype=np.int64)
    step_bytes = _PACK_CHUNK * bits // 8
    for k, start in enumerate(range(0, count, _PACK_CHUNK)):
        n = min(_PACK_CHUNK, count - start)
        chunk = raw[k * step_bytes : k * step_bytes + math.ceil(n * bits / 8)]
        matrix = np.unpackbits(chunk)[: n * bits].reshape(n, bits).astype(np.uint64)
        out[start : start + n] = (matrix @ weights).astype(np.int64)
    return out


# -- header validation ------------------------------------------------------------------------

_INT_FIELDS = {
    "sample_rate": (1, 10**6),
    "channels": (1, 64),
    "length": (0, 1 << 40),
    "groups": (1, 4096),
    "levels": (1, 4096),
    "codebook_size": (2, 1 << 31),
    "frames": (0, 1 << 34),
    "version": (1, 1 << 16),
}


def _check_header(data) -> CodesHeader:
    if not isinstance(data, dict):
        raise CodesFormatError("header is not a JSON object")
    names = {f for f in CodesHeader.__dataclass_fields__}
    missing = names - set(data) - {"gains", "extra", "version", "frames"}
    if missing:
        raise CodesFormatError(f"header is missing field(s): {', '.join(sorted(missing))}")
    unknown = set(data) - names
    if unknown:
        raise CodesFormatError(f"header has unknown field(s): {', '.join(sorted(unknown))}")
    for name in ("model_id", "weights_hash"):
        if not isinstance(data[name], str) or len(data[name]) > 256:
            raise CodesFormatError(f"header field {name!r} must be a string of <= 256 chars")
    for name, (low, high) in _INT_FIELDS.items():
        if name not in data:
            continue
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise CodesFormatError(f"header field {name!r} must be an integer in [{low}, {high}]")
    rate = data["frame_rate"]
    if (
        isinstance(rate, bool)
        or not isinstance(rate, (int, float))
        or not math.isfinite(rate)
        or not 0 < rate <= 10**6
    ):
        raise CodesFormatError("header field 'frame_rate' must be a finite number in (0, 1e6]")
    gains = data.get("gains")
    if gains is not None:
        if not isinstance(gains, list) or len(gains) > 1 << 20:
            raise CodesFormatError("header field 'gains' must be a list")
        for g in gains:
            if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g):
                raise CodesFormatError("header field 'gains' must hold finite numbers")
    extra = data.get("extra", {})
    if not isinstance(extra, dict) or len(extra) > 256:
        raise CodesFormatError("header field 'extra' must be an object of <= 256 entries")
    for key, value in extra.items():
        if not isinstance(value, (str, int, float, bool)) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise CodesFormatError(f"header field 'extra' entry {key!r} must be a plain value")
    header = CodesHeader(**data)
    if header.version != VERSION:
        raise CodesFormatError(f"unknown format version {header.version} (this reads {VERSION})")
    if header.num_codes > MAX_CODES:
        raise CodesFormatError(
            f"header claims {header.num_codes} codes, over the {MAX_CODES} limit"
        )
    return header


# -- encoding and decoding --------------------------------------------------------------------


def encode_codes_bytes(codes, header: CodesHeader) -> bytes:
    """codes (groups, levels, frames) -> the bytes of a .codes file. Fills header.frames."""
    array = codes.detach().cpu().numpy() if torch.is_tensor(codes) else np.asarray(codes)
    if array.ndim != 3 or array.shape[:2] != (header.groups, header.levels):
        raise ValueError(
            f"expected codes of shape ({header.groups}, {header.levels}, frames), "
            f"got {tuple(array.shape)}"
        )
    if array.size and (array.min() < 0 or array.max() >= header.codebook_size):
        raise ValueError(
            f"codes out of range: expected values in [0, {header.codebook_size}), "
            f"got min {array.min()}, max {array.max()}"
        )
    header.frames = int(array.shape[2])
    _check_header(asdict(header))
    head = json.dumps(asdict(header), separators=(",", ":")).encode()
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError(f"header of {len(head)} bytes is over {MAX_HEADER_BYTES}")
    payload = pack_bits(array.transpose(2, 1, 0).reshape(-1), header.bits)
    body = _PREFIX.pack(MAGIC, VERSION, len(head)) + head + payload
    return body + _CRC.pack(zlib.crc32(body))


def decode_codes_bytes(data: bytes) -> tuple[torch.Tensor, CodesHeader]:
    """The bytes of a .codes file -> (codes (groups, levels, frames) int64, header)."""
    size = len(data)
    if size < _PREFIX.size:
        raise CodesFormatError(f"truncated: {size} bytes, a .codes file has at least 16")
    magic, version, head_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise CodesFormatError("not a .codes file (wrong magic bytes)")
    if version != VERSION:
        raise CodesFormatError(f"unknown format version {version} (this reads {VERSION})")
    if head_len > MAX_HEADER_BYTES:
        raise CodesFormatError(f"header length {head_len} is over the {MAX_HEADER_BYTES} limit")
    if size < _PREFIX.size + head_len + _CRC.size:
        raise CodesFormatError(
            f"truncated: {size} bytes, the header alone needs {_PREFIX.size + head_len + 4}"
        )
    (stored_crc,) = _CRC.unpack_from(data, size - _CRC.size)
    if zlib.crc32(memoryview(data)[: size - _CRC.size]) != stored_crc:
        raise CodesFormatError("checksum mismatch: the file is damaged or was cut short")
    try:
        head = json.loads(bytes(data[_PREFIX.size : _PREFIX.size + head_len]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise CodesFormatError(f"header is not valid JSON ({err})") from None
    header = _check_header(head)
    start = _PREFIX.size + head_len
    expected = math.ceil(header.num_codes * header.bits / 8)
    present = size - _CRC.size - start
    if present != expected:
        raise CodesFormatError(
            f"payload is {present} bytes, the header's {header.frames} frames need {expected}"
        )
    values = unpack_bits(bytes(data[start : start + expected]), header.bits, header.num_codes)
    if values.size and values.max() >= header.codebook_size:
        raise CodesFormatError(f"a code is >= the codebook size {header.codebook_size}")
    codes = values.reshape(header.frames, header.levels, header.groups).transpose(2, 1, 0)
    return torch.from_numpy(np.ascontiguousarray(codes)), header


def write_codes(path, codes, header: CodesHeader) -> Path:
    """Write codes (groups, levels, frames) and header to `path` atomically."""
    return atomic_write_bytes(path, encode_codes_bytes(codes, header))


def read_codes(source) -> tuple[torch.Tensor, CodesHeader]:
    """Read a .codes file (path) or its bytes. Errors name the file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_codes_bytes(bytes(source))
    path = Path(source)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise CodesFormatError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
        data = path.read_bytes()
    except OSError as err:
        raise CodesFormatError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        return decode_codes_bytes(data)
    except CodesFormatError as err:
        raise CodesFormatError(f"{path}: {err}") from None


def check_model(header: CodesHeader, model_id: str, weights_hash: str) -> None:
    """Raise ModelMismatchError naming both models unless the codes come from this model."""
    if header.model_id != model_id or header.weights_hash != weights_hash:
        raise ModelMismatchError(
            f"codes were made by model {header.model_id!r} (weights {header.weights_hash}), "
            f"not by {model_id!r} (weights {weights_hash})"
        )
