"""The .codes container: round trips, atomic writes, damage, fuzzing."""

import json
import struct
import zlib
from dataclasses import asdict

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codec.tokens import (
    CodesFormatError,
    CodesHeader,
    ModelMismatchError,
    check_model,
    decode_codes_bytes,
    encode_codes_bytes,
    read_codes,
    write_codes,
)


def header(codebook_size=1024, groups=2, levels=3, **kw):
    fields = dict(
        model_id="tiny",
        weights_hash="ab12",
        sample_rate=16000,
        channels=1,
        length=3200,
        frame_rate=50.0,
        groups=groups,
        levels=levels,
        codebook_size=codebook_size,
        gains=[-3.5],
        extra={"source_sample_rate": 8000},
    )
    fields.update(kw)
    return CodesHeader(**fields)


def sample_bytes(frames=20, codebook_size=1024):
    g = torch.Generator().manual_seed(frames)
    codes = torch.randint(0, codebook_size, (2, 3, frames), generator=g)
    return encode_codes_bytes(codes, header(codebook_size)), codes


@pytest.mark.parametrize("codebook_size", [2, 3, 1000, 1024, 1025, 65536])
@pytest.mark.parametrize("frames", [0, 1, 37])
def test_round_trip(codebook_size, frames):
    codes = torch.randint(0, codebook_size, (2, 3, frames))
    data = encode_codes_bytes(codes, header(codebook_size))
    decoded, h = decode_codes_bytes(data)
    assert torch.equal(decoded, codes) and h.frames == frames
    bits = max(1, (codebook_size - 1).bit_length())
    assert h.bits == bits and h.bitrate == 50.0 * 2 * 3 * bits
    payload = -(-2 * 3 * frames * bits // 8)
    assert len(data) == 16 + len(json.dumps(asdict(h), separators=(",", ":"))) + payload


def test_pack_order_is_frame_then_level_then_group():
    codes = torch.arange(12).reshape(2, 3, 2)  # (g, q, f)
    h = header(codebook_size=256)
    data = encode_codes_bytes(codes, h)
    payload = data[-4 - 12 : -4]
    assert list(payload) == codes.permute(2, 1, 0).reshape(-1).tolist()


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "a.codes"
    data, codes = sample_bytes()
    write_codes(path, codes, header())
    original = path.read_bytes()

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("codec.fileio.os.replace", broken)
    with pytest.raises(OSError):
        write_codes(path, torch.zeros(2, 3, 5, dtype=torch.long), header())
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["a.codes"]


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def rebuilt(head: dict, payload: bytes) -> bytes:
    raw = json.dumps(head).encode()
    return with_crc(b"CODECS" + struct.pack("<HI", 1, len(raw)) + raw + payload)


def split(data: bytes):
    (length,) = struct.unpack_from("<I", data, 8)
    return json.loads(data[12 : 12 + length]), data[12 + length : -4]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d[:10], "truncated"),
        (lambda d: d[:40], "truncated|checksum"),
        (lambda d: d[:-1], "checksum"),
        (lambda d: b"RIFF" + d[4:], "not a .codes file"),
        (lambda d: d[:6] + b"\x09\x00" + d[8:], "version"),
        (lambda d: d[:-10] + bytes([d[-10] ^ 1]) + d[-9:], "checksum"),
        (lambda d: d[:8] + struct.pack("<I", 1 << 30) + d[12:], "header length"),
        (lambda d: d + b"\x00", "checksum"),
    ],
)
def test_damage_is_named(damage, message):
    data, _ = sample_bytes()
    with pytest.raises(CodesFormatError, match=message):
        decode_codes_bytes(damage(data))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda h: h.update(frames=1 << 33), "payload|codes"),
        (lambda h: h.update(groups="2"), "groups"),
        (lambda h: h.update(codebook_size=1), "codebook_size"),
        (lambda h: h.update(frame_rate=float("nan")) or h, "frame_rate"),
        (lambda h: h.pop("model_id"), "missing"),
        (lambda h: h.update(surprise=1), "unknown"),
        (lambda h: h.update(gains=["loud"]), "gains"),
        (lambda h: h.update(length=True), "length"),
        (lambda h: h.update(frames=21), "payload"),
    ],
)
def test_bad_header_fields_are_named(change, message):
    data, _ = sample_bytes()
    head, payload = split(data)
    change(head)
    with pytest.raises(CodesFormatError, match=message):
        decode_codes_bytes(rebuilt(head, payload))


def test_header_that_is_not_json_or_not_an_object():
    data, _ = sample_bytes()
    _, payload = split(data)
    raw = b"{not json"
    body = b"CODECS" + struct.pack("<HI", 1, len(raw)) + raw + payload
    with pytest.raises(CodesFormatError, match="JSON"):
        decode_codes_bytes(with_crc(body))
    with pytest.raises(CodesFormatError, match="object"):
        decode_codes_bytes(rebuilt([1, 2], payload))


def test_out_of_range_codes_are_refused_on_write_and_read():
    with pytest.raises(ValueError, match=r"\[0, 1000\)"):
        encode_codes_bytes(torch.full((2, 3, 4), 1000), header(codebook_size=1000))
    data = encode_codes_bytes(torch.full((2, 3, 4), 999), header(codebook_size=1000))
    head, payload = split(data)
    head["codebook_size"] = 600  # same 10 bits, but 999 is now out of range
    with pytest.raises(CodesFormatError, match="codebook size"):
        decode_codes_bytes(rebuilt(head, payload))


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "x.codes"
    path.write_bytes(b"hello")
    with pytest.raises(CodesFormatError, match="x.codes: truncated"):
        read_codes(path)
    with pytest.raises(CodesFormatError, match="missing.codes: cannot read"):
        read_codes(tmp_path / "missing.codes")


def test_model_mismatch_names_both_models():
    with pytest.raises(ModelMismatchError, match="'tiny'.*'other'"):
        check_model(header(), "other", "ff00")
    check_model(header(), "tiny", "ab12")


def test_bits_round_trip_for_a_long_file():
    codes = torch.randint(0, 1024, (1, 32, 20_000))
    decoded, _ = decode_codes_bytes(encode_codes_bytes(codes, header(groups=1, levels=32)))
    assert torch.equal(decoded, codes)


def decodes_cleanly_or_names_the_problem(data: bytes) -> None:
    try:
        codes, h = decode_codes_bytes(data)
    except CodesFormatError:
        return
    assert codes.shape == (h.groups, h.levels, h.frames)
    assert codes.numel() == 0 or (codes.min() >= 0 and codes.max() < h.codebook_size)


FUZZ = settings(
    max_examples=1500,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(
    frames=st.integers(0, 40),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
    tail=st.binary(max_size=16),
)
def test_fuzz_mutated_files(frames, flips, cut, tail):
    data = bytearray(sample_bytes(frames)[0])
    for position, bit in flips:
        data[position % len(data)] ^= 1 << bit
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    decodes_cleanly_or_names_the_problem(bytes(data) + tail)


@FUZZ
@given(
    key=st.sampled_from(sorted(CodesHeader.__dataclass_fields__) + ["junk"]),
    value=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
        st.lists(st.integers(-5, 5), max_size=5),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    ),
    frames=st.integers(0, 10),
)
def test_fuzz_header_fields_with_valid_checksum(key, value, frames):
    head, payload = split(sample_bytes(frames)[0])
    head[key] = value
    decodes_cleanly_or_names_the_problem(rebuilt(head, payload))
