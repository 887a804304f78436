"""The `.codes` container: the codes of one file, bit-packed, with a JSON header and a checksum.

Byte layout (all integers little-endian):

    offset      size  field
    0           6     magic b"CODECS"
    6           2     format version, uint16 (VERSION = 1)
    8           4     header length H, uint32, at most MAX_HEADER_BYTES
    12          H     header: a UTF-8 JSON object, the fields of CodesHeader
    12 + H      P     payload: the codes bit-packed at bits = ceil(log2(codebook_size)) each,
                      most significant bit first, P = ceil(groups * levels * frames * bits / 8),
                      the unused low bits of the last byte are zero
    12 + H + P  4     CRC32 (zlib.crc32) of bytes [0, 12 + H + P), uint32

Pack order: codes of shape (groups, levels, frames) are stored in C order of shape
(frames, levels, groups), i.e. code number (frame * levels + level) * groups + group. Within a
frame that is the language-model order k = level * groups + group, and whole frames are
contiguous, so a file can be read or cut frame by frame.

Header (JSON, written compact and ASCII-only): every CodesHeader field is present. model_id is
1..256 characters, weights_hash 1..128 hex digits; sample_rate, channels, groups, levels and
codebook_size within the toolkit's limits (codec/limits.py: 1000..384000 Hz, 1..2 channels,
1..64 groups, 1..1024 levels, 2..2**20 codes, so codes take at most 20 bits), length >= 0,
frames >= 0 (0 is an empty file), integers all; frame_rate finite in (0, sample_rate]; gains null
or a list of finite dB values; extra an object of strings and finite numbers; version equal to
the one in the prefix.

Reading trusts nothing: no pickle; the header length is bounded before it is read; every header
field is type- and range-checked (groups * levels * frames <= MAX_CODES); the payload must be
exactly the size the header implies, so nothing is allocated beyond what the bytes hold; every
problem raises `CodesFormatError` saying what is wrong (and, from a path, which file).
"""

from __future__ import annotations

import json
import numbers
import re
import struct
import typing
import zlib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from codec.bounds import bounded, is_int, is_number, limits, rule_broken
from codec.errors import FileError
from codec.fileio import atomic_write_bytes, read_regular_file
from codec.limits import (
    MAX_CHANNELS,
    MAX_CODEBOOK_SIZE,
    MAX_GROUPS,
    MAX_LEVELS,
    MAX_SAMPLE_RATE,
    MIN_CHANNELS,
    MIN_CODEBOOK_SIZE,
    MIN_GROUPS,
    MIN_LEVELS,
    MIN_SAMPLE_RATE,
)

MAGIC = b"CODECS"
VERSION = 1
MAX_HEADER_BYTES = 1 << 20  # 1 MiB of JSON
MAX_CODES = 1 << 32  # groups * levels * frames; 75 Hz x 32 codes is 8.6 M per hour

_PREFIX = struct.Struct("<6sHI")  # magic, version, header length
_CRC = struct.Struct("<I")
_MIN_FILE_BYTES = _PREFIX.size + _CRC.size
_PACK_CHUNK = 1 << 18  # codes per packing step; a multiple of 8, so every step is byte-aligned
_HEX = re.compile(r"[0-9a-fA-F]{1,128}")
_MAX_GAINS = 1 << 16
_MAX_GAIN_DB = 1000.0
_MAX_EXTRA_ITEMS = 1024
_MAX_NAME_CHARS = 256


class CodesFormatError(FileError):
    """Bytes that are not a valid .codes file, or a header that cannot be written; the message
    says what is wrong (and names the file when one was read)."""


class ModelMismatchError(CodesFormatError):
    """Codes made by a different model (id or weights) than the one asked to decode them."""


@dataclass
class CodesHeader:
    """What a decoder needs besides the codes. `frames` = 0 on write means "take it from the
    codes"; after reading it is the number of frames stored. The bounds are what a file may
    hold (codec/limits.py)."""

    model_id: str = bounded(length=(1, _MAX_NAME_CHARS))
    weights_hash: str = bounded(length=(1, 128))  # hex digits
    sample_rate: int = bounded(range=(MIN_SAMPLE_RATE, MAX_SAMPLE_RATE))  # Hz of the model's audio
    channels: int = bounded(range=(MIN_CHANNELS, MAX_CHANNELS))
    length: int = bounded(range=(0, 1 << 48))  # samples at sample_rate, before padding
    frame_rate: float = bounded()  # code frames per second, in (0, sample_rate]
    groups: int = bounded(range=(MIN_GROUPS, MAX_GROUPS))
    levels: int = bounded(range=(MIN_LEVELS, MAX_LEVELS))
    codebook_size: int = bounded(range=(MIN_CODEBOOK_SIZE, MAX_CODEBOOK_SIZE))
    frames: int = bounded(0, range=(0, MAX_CODES))
    # per-chunk loudness gains in dB, undone on decode
    gains: list[float] | None = bounded(
        None, range=(-_MAX_GAIN_DB, _MAX_GAIN_DB), length=(0, _MAX_GAINS)
    )
    version: int = bounded(VERSION, range=(0, 0xFFFF))
    # strings and finite numbers (below 2**63), checked entry by entry
    extra: dict[str, str | int | float] = bounded({}, length=(0, _MAX_EXTRA_ITEMS))

    @property
    def bits(self) -> int:
        """Bits per stored code: ceil(log2(codebook_size))."""
        return bits_per_code(self.codebook_size)

    @property
    def bitrate(self) -> float:
        """Bits per second of the stored codes: frame_rate * groups * levels * bits."""
        return self.frame_rate * self.groups * self.levels * self.bits

    @property
    def duration(self) -> float:
        """Seconds of the original audio: length / sample_rate."""
        return self.length / self.sample_rate

    @property
    def num_codes(self) -> int:
        return self.groups * self.levels * self.frames

    @property
    def payload_bytes(self) -> int:
        return (self.num_codes * self.bits + 7) // 8


def bits_per_code(codebook_size: int) -> int:
    """ceil(log2(codebook_size)), exactly (no floating point); at least 1."""
    return max(1, (int(codebook_size) - 1).bit_length())


# the largest file the header limits allow: codes of the most bits, MAX_CODES of them
MAX_FILE_BYTES = 12 + MAX_HEADER_BYTES + (MAX_CODES * bits_per_code(MAX_CODEBOOK_SIZE) + 7) // 8 + 4


# -- bit packing ------------------------------------------------------------------------------


def pack_bits(values, bits: int) -> bytes:
    """Integers in [0, 2**bits), any shape (flattened in C order) -> ceil(n * bits / 8) bytes.

    Each value takes `bits` bits, most significant first; the last byte is padded with zeros.
    `bits` is 1..32."""
    _check_bits(bits)
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind not in "iu":
        raise ValueError(f"pack_bits needs integers, got dtype {values.dtype}")
    if values.size and (values.min() < 0 or values.max() >= 1 << bits):
        raise ValueError(
            f"values must be in [0, {1 << bits}) for {bits} bits, "
            f"got min {values.min()}, max {values.max()}"
        )
    pieces = []
    for start in range(0, values.size, _PACK_CHUNK):
        part = values[start : start + _PACK_CHUNK].astype(">u4")  # big-endian: MSB byte first
        bit_matrix = np.unpackbits(part.view(np.uint8).reshape(-1, 4), axis=1)  # (n, 32)
        pieces.append(np.packbits(bit_matrix[:, 32 - bits :].reshape(-1)).tobytes())
    return b"".join(pieces)


def unpack_bits(data, bits: int, count: int) -> np.ndarray:
    """Inverse of pack_bits: the first `count` values of `data`, as int64 of shape (count,).

    Raises CodesFormatError when `data` holds fewer than count * bits bits."""
    _check_bits(bits)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    raw = np.frombuffer(data, dtype=np.uint8)
    needed = (count * bits + 7) // 8
    if raw.size < needed:
        raise CodesFormatError(
            f"packed data is {raw.size} bytes, {count} codes of {bits} bits need {needed}"
        )
    out = np.empty(count, dtype=np.int64)
    step_bytes = _PACK_CHUNK * bits // 8
    for index, start in enumerate(range(0, count, _PACK_CHUNK)):
        n = min(_PACK_CHUNK, count - start)
        chunk = raw[index * step_bytes : index * step_bytes + (n * bits + 7) // 8]
        bit_matrix = np.zeros((n, 32), dtype=np.uint8)
        bit_matrix[:, 32 - bits :] = np.unpackbits(chunk, count=n * bits).reshape(n, bits)
        out[start : start + n] = np.packbits(bit_matrix, axis=1).view(">u4").reshape(-1)
    return out


def _check_bits(bits) -> None:
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 1 <= bits <= 32:
        raise ValueError(f"bits must be an integer in [1, 32], got {bits!r}")


# -- header validation ------------------------------------------------------------------------

_FIELD_NAMES = tuple(f.name for f in fields(CodesHeader))
_FIELD_TYPES = typing.get_type_hints(CodesHeader)


def _bad(name: str, rule: str, value) -> CodesFormatError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return CodesFormatError(f"header field {name!r} must be {rule}, got {shown}")


def _header_from_fields(data) -> CodesHeader:
    """A JSON-decoded header object -> a checked CodesHeader, or CodesFormatError."""
    if not isinstance(data, dict):
        raise CodesFormatError(f"header is not a JSON object (it is a {type(data).__name__})")
    missing = [name for name in _FIELD_NAMES if name not in data]
    if missing:
        raise CodesFormatError(f"header is missing field(s): {', '.join(missing)}")
    unknown = sorted(set(data) - set(_FIELD_NAMES))
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise CodesFormatError(f"header has unknown field(s): {shown}")

    version = data["version"]
    if is_int(version) and version != VERSION:
        raise CodesFormatError(f"unknown format version {version} in header (reads {VERSION})")
    for f in fields(CodesHeader):
        value = data[f.name]
        rule = rule_broken(_FIELD_TYPES[f.name], value, **limits(f))
        if rule is not None:
            raise _bad(f.name, rule, value)
    if not _HEX.fullmatch(data["weights_hash"]):
        raise _bad("weights_hash", "1..128 hex digits", data["weights_hash"])
    rate = data["frame_rate"]
    if not 0 < rate <= data["sample_rate"]:
        raise _bad("frame_rate", "a finite number in (0, sample_rate]", rate)
    gains = data["gains"]
    if gains is not None:
        gains = [float(gain) for gain in gains]
    extra = data["extra"]
    for key, value in extra.items():
        if not isinstance(key, str) or len(key) > _MAX_NAME_CHARS:
            raise _bad("extra", f"keyed by strings of <= {_MAX_NAME_CHARS} characters", key)
        plain = isinstance(value, str) or (
            is_number(value) and (not is_int(value) or abs(value) < 1 << 63)
        )
        if not plain:
            raise CodesFormatError(
                f"header field 'extra' entry {key[:40]!r} must be a string or a finite number "
                f"below 2**63, got {repr(value)[:60]}"
            )

    groups, levels, frames = data["groups"], data["levels"], data["frames"]
    if groups * levels * frames > MAX_CODES:
        raise CodesFormatError(
            f"header claims {groups} x {levels} x {frames} = {groups * levels * frames} codes, "
            f"over the limit of {MAX_CODES}"
        )
    return CodesHeader(**{**data, "frame_rate": float(rate), "gains": gains, "extra": dict(extra)})


def _normalised_fields(header: CodesHeader) -> dict:
    """Header fields as plain JSON types (numpy/torch scalars become int/float)."""
    data = asdict(header)

    def plain(value):
        if isinstance(value, (bool, str)) or value is None:
            return value
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            return float(value)
        return value  # left for validation to name

    for name, value in data.items():
        if name == "gains" and isinstance(value, (list, tuple)):
            data[name] = [plain(gain) for gain in value]
        elif name == "extra" and isinstance(value, dict):
            data[name] = {key: plain(item) for key, item in value.items()}
        else:
            data[name] = plain(value)
    if isinstance(data["frame_rate"], int):
        data["frame_rate"] = float(data["frame_rate"])
    return data


def _reject_duplicate_keys(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:40]!r}")
        result[key] = value
    return result


def _reject_constant(name):
    raise ValueError(f"non-standard constant {name}")


def _parse_header_json(raw: bytes):
    try:
        text = raw.decode("utf-8")
        return json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, digits
        message = str(err) if not isinstance(err, RecursionError) else "nested too deeply"
        raise CodesFormatError(f"header is not valid JSON: {message[:200]}") from None


# -- encoding and decoding --------------------------------------------------------------------


def _codes_array(codes) -> np.ndarray:
    if torch.is_tensor(codes):
        if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
        return codes.detach().cpu().numpy()
    array = np.asarray(codes)
    if array.dtype.kind not in "iu":
        raise ValueError(f"codes must be integers, got dtype {array.dtype}")
    return array


def encode_codes_bytes(codes, header: CodesHeader) -> bytes:
    """codes (groups, levels, frames), integers in [0, codebook_size) -> the bytes of a .codes
    file. `header.frames` is taken from the codes (0 in the header means "fill it in"); the
    caller's header is not changed. Raises ValueError for codes that do not fit the header and
    CodesFormatError (a ValueError) for an invalid header."""
    return _encode(codes, header)[0]


def _encode(codes, header: CodesHeader) -> tuple[bytes, CodesHeader]:
    array = _codes_array(codes)
    if array.ndim != 3 or array.shape[:2] != (header.groups, header.levels):
        raise ValueError(
            f"expected codes of shape (groups={header.groups}, levels={header.levels}, frames), "
            f"got {tuple(array.shape)}"
        )
    frames = int(array.shape[2])
    if header.frames not in (0, frames):
        raise ValueError(f"header says {header.frames} frames, the codes have {frames}")
    if array.size and (array.min() < 0 or array.max() >= header.codebook_size):
        raise ValueError(
            f"codes out of range: expected values in [0, {header.codebook_size}), "
            f"got min {array.min()}, max {array.max()}"
        )
    data = _normalised_fields(replace(header, frames=frames))
    checked = _header_from_fields(data)
    head = json.dumps(data, separators=(",", ":"), allow_nan=False).encode("ascii")
    if len(head) > MAX_HEADER_BYTES:
        raise CodesFormatError(f"header is {len(head)} bytes, over the {MAX_HEADER_BYTES} limit")
    payload = pack_bits(array.transpose(2, 1, 0), checked.bits)  # C order of (f, l, g)
    body = _PREFIX.pack(MAGIC, VERSION, len(head)) + head + payload
    return body + _CRC.pack(zlib.crc32(body)), checked


def decode_codes_bytes(data) -> tuple[torch.Tensor, CodesHeader]:
    """The bytes of a .codes file -> (codes, header), codes an int64 tensor of shape
    (groups, levels, frames). Raises CodesFormatError naming the problem."""
    view = memoryview(data).cast("B")
    size = view.nbytes
    head_magic = bytes(view[: len(MAGIC)])
    if head_magic != MAGIC[: len(head_magic)]:
        raise CodesFormatError(f"not a .codes file (starts with {head_magic!r}, not {MAGIC!r})")
    if size < _MIN_FILE_BYTES:
        raise CodesFormatError(
            f"truncated: {size} bytes present, a .codes file has at least {_MIN_FILE_BYTES}"
        )
    _, version, head_len = _PREFIX.unpack_from(view)
    if version != VERSION:
        raise CodesFormatError(f"unknown format version {version} (this reader knows {VERSION})")
    if head_len > MAX_HEADER_BYTES:
        raise CodesFormatError(
            f"header length {head_len} is over the limit of {MAX_HEADER_BYTES} bytes"
        )
    payload_start = _PREFIX.size + head_len
    if size < payload_start + _CRC.size:
        raise CodesFormatError(
            f"truncated: expected at least {payload_start + _CRC.size} bytes "
            f"(a {head_len}-byte header), {size} present"
        )
    stored_crc = _CRC.unpack_from(view, size - _CRC.size)[0]
    crc_ok = zlib.crc32(view[: size - _CRC.size]) == stored_crc

    try:
        header = _header_from_fields(_parse_header_json(bytes(view[_PREFIX.size : payload_start])))
    except CodesFormatError as err:
        if crc_ok:
            raise
        raise CodesFormatError(f"checksum mismatch: the file is damaged ({err})") from None

    payload_end = payload_start + header.payload_bytes
    expected_size = payload_end + _CRC.size
    if not crc_ok:
        if size < expected_size:
            raise CodesFormatError(f"truncated: expected {expected_size} bytes, {size} present")
        if (
            size > expected_size
            and zlib.crc32(view[:payload_end]) == _CRC.unpack_from(view, payload_end)[0]
        ):
            raise CodesFormatError(
                f"trailing bytes: {size - expected_size} bytes after the end of the codes "
                f"(expected {expected_size} bytes, {size} present)"
            )
        raise CodesFormatError(
            f"checksum mismatch: stored {stored_crc:08x}, computed "
            f"{zlib.crc32(view[: size - _CRC.size]):08x}; the file is damaged"
        )
    present = size - _CRC.size - payload_start
    if present != header.payload_bytes:
        raise CodesFormatError(
            f"payload size mismatch: {present} bytes, but {header.groups} groups x "
            f"{header.levels} levels x {header.frames} frames at {header.bits} bits need "
            f"{header.payload_bytes}"
        )

    payload = view[payload_start:payload_end]
    spare_bits = header.payload_bytes * 8 - header.num_codes * header.bits
    if spare_bits and payload[-1] & ((1 << spare_bits) - 1):
        raise CodesFormatError("payload padding bits are not zero")
    values = unpack_bits(payload, header.bits, header.num_codes)
    codes = values.reshape(header.frames, header.levels, header.groups).transpose(2, 1, 0)
    if values.size and values.max() >= header.codebook_size:
        group, level, frame = np.argwhere(codes >= header.codebook_size)[0]
        raise CodesFormatError(
            f"code {codes[group, level, frame]} at group {group}, level {level}, frame {frame} "
            f"is out of range [0, {header.codebook_size})"
        )
    return torch.from_numpy(np.ascontiguousarray(codes)), header


# -- files ------------------------------------------------------------------------------------


def write_codes(path, codes, header: CodesHeader) -> CodesHeader:
    """Write codes (groups, levels, frames) and `header` to `path` atomically: a temp file in
    the same folder, fsync, then os.replace, so `path` holds the old file or the new one, never
    part of one. Returns the header as written (frames filled in)."""
    data, written = _encode(codes, header)
    atomic_write_bytes(path, data)
    return written


def read_codes(source) -> tuple[torch.Tensor, CodesHeader]:
    """Read a .codes file from a path, or from its bytes (bytes, bytearray, memoryview).

    Returns (codes, header), codes an int64 tensor (groups, levels, frames). Every problem,
    including an unreadable or non-regular file, raises CodesFormatError naming the file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_codes_bytes(source)
    path = Path(source)
    try:
        data = read_regular_file(path, MAX_FILE_BYTES, CodesFormatError)
        return decode_codes_bytes(data)
    except CodesFormatError as err:
        raise CodesFormatError.in_file(path, err) from None
    except OSError as err:
        raise CodesFormatError.in_file(path, f"cannot read ({err.strerror or err})") from None


def check_model(header: CodesHeader, model_id: str, weights_hash: str) -> None:
    """Raise ModelMismatchError naming both models unless the codes were made by this model
    (same model id and same weights hash, compared case-insensitively)."""
    if header.model_id != model_id or header.weights_hash.lower() != weights_hash.lower():
        raise ModelMismatchError(
            f"model mismatch: the codes were made by model {header.model_id!r} (weights "
            f"{header.weights_hash}), not by {model_id!r} (weights {weights_hash})"
        )
