"""The .codes container: round trips, bit packing, atomic writes, named damage, fuzzing."""

import json
import os
import struct
import tracemalloc
import zlib
from dataclasses import asdict

import numpy as np
import pytest
import torch
from fuzzing import fuzz
from hypothesis import given
from hypothesis import strategies as st

from codec import codes_file
from codec.codes_file import (
    MAX_CODEBOOK_SIZE,
    MAX_CODES,
    MAX_HEADER_BYTES,
    CodesFormatError,
    CodesHeader,
    ModelMismatchError,
    check_model,
    decode_codes_bytes,
    encode_codes_bytes,
    pack_bits,
    read_codes,
    unpack_bits,
    write_codes,
)


def make_header(codebook_size=1024, groups=2, levels=3, **overrides) -> CodesHeader:
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
        gains=[-3.5, 1.25],
        extra={"source_sample_rate": 8000, "note": "test"},
    )
    fields.update(overrides)
    return CodesHeader(**fields)


def random_codes(groups, levels, frames, codebook_size, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, codebook_size, (groups, levels, frames), generator=generator)


def sample_file(frames=20, codebook_size=1024) -> tuple[bytes, torch.Tensor]:
    codes = random_codes(2, 3, frames, codebook_size, seed=frames)
    return encode_codes_bytes(codes, make_header(codebook_size)), codes


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def assemble(head_bytes: bytes, payload: bytes, version=1) -> bytes:
    """A file with the given raw header bytes and payload and a correct checksum."""
    return with_crc(b"CODECS" + struct.pack("<HI", version, len(head_bytes)) + head_bytes + payload)


def rebuilt(head, payload: bytes) -> bytes:
    return assemble(json.dumps(head).encode(), payload)


def split(data: bytes) -> tuple[dict, bytes]:
    (length,) = struct.unpack_from("<I", data, 8)
    return json.loads(data[12 : 12 + length]), data[12 + length : -4]


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("codebook_size", [2, 3, 1000, 1024, 1025, 65536])
@pytest.mark.parametrize("shape", [(2, 3, 0), (2, 3, 1), (2, 3, 37), (1, 1, 9), (3, 5, 8)])
def test_round_trip_is_exact(codebook_size, shape):
    groups, levels, frames = shape
    codes = random_codes(groups, levels, frames, codebook_size, seed=codebook_size)
    codes[..., :1] = codebook_size - 1  # the largest code is stored too
    h = make_header(codebook_size, groups, levels)
    data = encode_codes_bytes(codes, h)
    decoded, got = decode_codes_bytes(data)
    assert decoded.dtype == torch.int64 and decoded.shape == (groups, levels, frames)
    assert torch.equal(decoded, codes)
    assert got == make_header(codebook_size, groups, levels, frames=frames)
    bits = (codebook_size - 1).bit_length()
    assert got.bits == bits
    head_len = len(json.dumps(asdict(got), separators=(",", ":")))
    assert len(data) == 12 + head_len + -(-groups * levels * frames * bits // 8) + 4


def test_header_is_not_changed_and_numpy_input_works():
    h = make_header(codebook_size=300, gains=None, extra={})
    codes = np.random.default_rng(0).integers(0, 300, (2, 3, 11)).astype(np.int32)
    decoded, got = decode_codes_bytes(encode_codes_bytes(codes, h))
    assert h.frames == 0 and got.frames == 11 and got.gains is None and got.extra == {}
    assert torch.equal(decoded, torch.from_numpy(codes.astype(np.int64)))


def test_numpy_scalars_in_the_header_are_written_as_plain_numbers():
    h = make_header(
        sample_rate=np.int64(16000), frame_rate=np.float32(50.0), gains=[np.float32(-1.5)]
    )
    _, got = decode_codes_bytes(encode_codes_bytes(random_codes(2, 3, 4, 1024), h))
    assert got.sample_rate == 16000 and got.frame_rate == 50.0 and got.gains == [-1.5]


def test_long_file_round_trip():
    codes = random_codes(1, 32, 20_000, 1024, seed=1)  # 640 k codes, over two packing chunks
    decoded, _ = decode_codes_bytes(encode_codes_bytes(codes, make_header(groups=1, levels=32)))
    assert torch.equal(decoded, codes)


def test_pack_order_is_frame_then_level_then_group():
    codes = torch.arange(24).reshape(2, 3, 4)  # (groups, levels, frames)
    payload = split(encode_codes_bytes(codes, make_header(codebook_size=256)))[1]
    expected = [int(codes[g, q, f]) for f in range(4) for q in range(3) for g in range(2)]
    assert list(payload) == expected  # k = level * groups + group within each frame


def test_pack_bits_is_msb_first_with_zero_padding():
    # 001 010 011 -> 00101001 1 + seven zero bits
    assert pack_bits(np.array([1, 2, 3]), 3) == bytes([0b00101001, 0b10000000])
    assert unpack_bits(bytes([0b00101001, 0b10000000]), 3, 3).tolist() == [1, 2, 3]
    assert pack_bits(np.array([], dtype=np.int64), 7) == b""


@pytest.mark.parametrize("bits", [1, 2, 3, 7, 8, 9, 10, 11, 16, 17, 31, 32])
def test_pack_unpack_every_width(bits):
    rng = np.random.default_rng(bits)
    count = codes_file._PACK_CHUNK + 13  # crosses a chunk boundary, ends mid-byte
    values = rng.integers(0, 1 << bits, count, dtype=np.int64)
    values[:2] = [0, (1 << bits) - 1]
    data = pack_bits(values, bits)
    assert len(data) == -(-count * bits // 8)
    assert np.array_equal(unpack_bits(data, bits, count), values)


def test_pack_bits_refuses_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        pack_bits(np.array([8]), 3)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        pack_bits(np.array([-1]), 3)
    with pytest.raises(ValueError, match="integers"):
        pack_bits(np.array([1.5]), 3)
    with pytest.raises(ValueError, match="bits"):
        pack_bits(np.array([1]), 33)
    with pytest.raises(CodesFormatError, match="need 2"):
        unpack_bits(b"\x00", 3, 4)


def test_bitrate_and_duration():
    encodec = make_header(groups=1, levels=8, sample_rate=24000, frame_rate=75.0, length=48000)
    assert encodec.bitrate == 6000 and encodec.duration == 2.0
    hifi = make_header(groups=2, levels=2, frame_rate=50.0)
    assert hifi.bitrate == 2000
    assert make_header(codebook_size=1025, groups=1, levels=1).bitrate == 50 * 11


# -- writing ----------------------------------------------------------------------------------


def test_write_and_read_a_file(tmp_path):
    path = tmp_path / "sub" / "a.codes"
    codes = random_codes(2, 3, 10, 1024)
    written = write_codes(path, codes, make_header())
    assert written.frames == 10
    decoded, got = read_codes(path)
    assert torch.equal(decoded, codes) and got == written
    for source in (path.read_bytes(), bytearray(path.read_bytes()), memoryview(path.read_bytes())):
        assert torch.equal(read_codes(source)[0], codes)


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "a.codes"
    write_codes(path, random_codes(2, 3, 10, 1024), make_header())
    original = path.read_bytes()

    def no_space(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OSError, match="No space"):
        write_codes(path, torch.zeros(2, 3, 5, dtype=torch.long), make_header())
    with pytest.raises(OSError, match="No space"):
        write_codes(tmp_path / "new.codes", torch.zeros(2, 3, 5, dtype=torch.long), make_header())
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.codes"]


def test_failure_while_writing_the_bytes_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "a.codes"
    write_codes(path, random_codes(2, 3, 10, 1024), make_header())
    original = path.read_bytes()

    def disk_error(self, data):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("pathlib.Path.write_bytes", disk_error)
    with pytest.raises(OSError):
        write_codes(path, torch.zeros(2, 3, 5, dtype=torch.long), make_header())
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.codes"]


@pytest.mark.parametrize(
    "codes, header, message",
    [
        (torch.full((2, 3, 4), 1000), make_header(1000), r"out of range.*\[0, 1000\)"),
        (torch.full((2, 3, 4), -1), make_header(1000), r"out of range"),
        (torch.zeros(2, 4, 4, dtype=torch.long), make_header(), r"shape \(groups=2, levels=3"),
        (torch.zeros(2, 3, dtype=torch.long), make_header(), "shape"),
        (torch.zeros(2, 3, 4), make_header(), "integers"),
        (torch.zeros(2, 3, 4, dtype=torch.long), make_header(frames=5), "5 frames"),
        (torch.zeros(2, 3, 4, dtype=torch.long), make_header(codebook_size=1), "codebook_size"),
        (torch.zeros(2, 3, 4, dtype=torch.long), make_header(weights_hash="xyz"), "hex"),
        (torch.zeros(2, 3, 4, dtype=torch.long), make_header(frame_rate=float("inf")), "frame"),
        (torch.zeros(2, 3, 4, dtype=torch.long), make_header(extra={"a": [1]}), "extra"),
    ],
)
def test_write_refuses_what_it_could_not_read_back(codes, header, message):
    with pytest.raises(ValueError, match=message):
        encode_codes_bytes(codes, header)


def test_write_refuses_a_header_over_the_size_limit():
    h = make_header(extra={"big": "x" * MAX_HEADER_BYTES})
    with pytest.raises(CodesFormatError, match="over the"):
        encode_codes_bytes(torch.zeros(2, 3, 1, dtype=torch.long), h)


# -- damage -----------------------------------------------------------------------------------


def test_truncation_says_how_many_bytes_were_expected():
    data, _ = sample_file()
    size = len(data)
    head_len = struct.unpack_from("<I", data, 8)[0]
    cases = {
        0: "at least 16",
        5: "at least 16",
        11: "at least 16",
        12
        + head_len // 2: f"expected at least {12 + head_len + 4} bytes .*, {12 + head_len // 2} ",
        12 + head_len + 5: f"expected {size} bytes, {12 + head_len + 5} present",
        size - 20: f"expected {size} bytes, {size - 20} present",
        size - 1: f"expected {size} bytes, {size - 1} present",
    }
    for cut, message in cases.items():
        with pytest.raises(CodesFormatError, match="truncated") as info:
            decode_codes_bytes(data[:cut])
        assert info.match(message), (cut, str(info.value))


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ (1 << bit)]) + data[index + 1 :]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: b"RIFF" + d[4:], "not a .codes file"),
        (lambda d: b"RI", "not a .codes file"),
        (lambda d: d[:6] + b"\x09\x00" + d[8:], "unknown format version 9"),
        (lambda d: d[:6] + b"\x00\x00" + d[8:], "unknown format version 0"),
        (lambda d: flip(d, len(d) - 10), "checksum mismatch"),  # a payload bit
        (lambda d: flip(d, len(d) - 2, 5), "checksum mismatch"),  # a checksum bit
        (lambda d: flip(d, 20, 3), "checksum mismatch"),  # a header bit
        (lambda d: d[:8] + struct.pack("<I", 1 << 30) + d[12:], "header length .* over"),
        (lambda d: d[:8] + struct.pack("<I", 4) + d[12:], "checksum mismatch.*JSON"),
        (lambda d: d + b"\x00", "trailing bytes: 1 bytes"),
        (lambda d: d + bytes(1000), "trailing bytes: 1000 bytes"),
    ],
)
def test_damage_is_named(damage, message):
    data, _ = sample_file()
    with pytest.raises(CodesFormatError, match=message):
        decode_codes_bytes(damage(data))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda h: h.update(groups="2"), "'groups' must be an integer"),
        (lambda h: h.update(groups=0), "'groups' must be an integer in \\[1"),
        (lambda h: h.update(levels=2.0), "'levels'"),
        (lambda h: h.update(codebook_size=1), "'codebook_size'"),
        (lambda h: h.update(codebook_size=1 << 40), "'codebook_size'"),
        (lambda h: h.update(sample_rate=-16000), "'sample_rate'"),
        (lambda h: h.update(channels=0), "'channels'"),
        (lambda h: h.update(length=True), "'length'"),
        (lambda h: h.update(length=-1), "'length'"),
        (lambda h: h.update(frame_rate="50"), "'frame_rate'"),
        (lambda h: h.update(frame_rate=0), "'frame_rate'"),
        (lambda h: h.update(frame_rate=10**400), "'frame_rate'"),
        (lambda h: h.update(frame_rate=1e6), "'frame_rate'"),  # above the sample rate
        (lambda h: h.update(model_id=7), "'model_id'"),
        (lambda h: h.update(model_id=""), "'model_id'"),
        (lambda h: h.update(weights_hash="not hex"), "'weights_hash'.*hex"),
        (lambda h: h.update(gains="loud"), "'gains'"),
        (lambda h: h.update(gains=["loud"]), "'gains'"),
        (lambda h: h.update(gains=[1e300]), "'gains'"),
        (lambda h: h.update(extra=[]), "'extra'"),
        (lambda h: h.update(extra={"a": {"b": 1}}), "'extra' entry 'a'"),
        (lambda h: h.update(extra={"a": None}), "'extra' entry 'a'"),
        (lambda h: h.update(extra={"a": 1 << 70}), "'extra' entry 'a'"),
        (lambda h: h.update(version=2), "unknown format version 2 in header"),
        (lambda h: h.update(version="1"), "'version'"),
        (lambda h: h.pop("model_id"), "missing field.*model_id"),
        (lambda h: h.pop("frames"), "missing field.*frames"),
        (lambda h: h.update(surprise=1), "unknown field.*surprise"),
        (lambda h: h.update(frames=21), "payload size mismatch: 150 bytes.* need 158"),
        (lambda h: h.update(frames=19), "payload size mismatch"),
        (lambda h: h.update(groups=3), "payload size mismatch"),
        (lambda h: h.update(codebook_size=2048), "payload size mismatch"),
    ],
)
def test_bad_header_fields_are_named(change, message):
    data, _ = sample_file()
    head, payload = split(data)
    change(head)
    with pytest.raises(CodesFormatError, match=message):
        decode_codes_bytes(rebuilt(head, payload))


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),  # not UTF-8
        (b"[1, 2]", "not a JSON object"),
        (b"null", "not a JSON object"),
        (b'{"frame_rate": NaN}', "not valid JSON.*NaN"),
        (b'{"a": 1, "a": 2}', "not valid JSON.*duplicate key 'a'"),
        (b'{"a": 1' + b"0" * 5000 + b"}", "not valid JSON"),  # over Python's int digit limit
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # nesting
        (b"{}", "missing field"),
    ],
)
def test_header_that_is_not_a_json_object(raw, message):
    _, payload = split(sample_file()[0])
    with pytest.raises(CodesFormatError, match=message):
        decode_codes_bytes(assemble(raw, payload))


def test_huge_claimed_frame_count_allocates_nothing():
    head, payload = split(sample_file()[0])
    tracemalloc.start()
    try:
        for frames in (MAX_CODES // 6, MAX_CODES, 1 << 60):
            head["frames"] = frames
            with pytest.raises(CodesFormatError, match="payload size mismatch|limit|'frames'"):
                decode_codes_bytes(rebuilt(head, payload))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_out_of_range_codes_and_padding_are_refused_on_read():
    data = encode_codes_bytes(torch.full((2, 3, 4), 999), make_header(codebook_size=1000))
    head, payload = split(data)
    head["codebook_size"] = 600  # still 10 bits, but 999 is out of range now
    with pytest.raises(CodesFormatError, match=r"code 999 at group 0, level 0, frame 0 .*600"):
        decode_codes_bytes(rebuilt(head, payload))

    data = encode_codes_bytes(torch.zeros(2, 3, 1, dtype=torch.long), make_header(codebook_size=8))
    head, payload = split(data)  # 18 bits in 3 bytes: 6 padding bits
    with pytest.raises(CodesFormatError, match="padding"):
        decode_codes_bytes(rebuilt(head, payload[:-1] + b"\x01"))


# -- files and models -------------------------------------------------------------------------


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "x.codes"
    path.write_bytes(b"CODE")
    with pytest.raises(CodesFormatError, match=r"x\.codes: truncated: 4 bytes present"):
        read_codes(path)
    data, _ = sample_file()
    path.write_bytes(flip(data, len(data) - 9))
    with pytest.raises(CodesFormatError, match=r"x\.codes: checksum mismatch"):
        read_codes(path)
    with pytest.raises(CodesFormatError, match=r"missing\.codes: cannot read"):
        read_codes(tmp_path / "missing.codes")
    with pytest.raises(CodesFormatError, match="test_errors_name_the_file0: cannot read"):
        read_codes(tmp_path)  # a folder


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_reading_a_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "pipe.codes"
    os.mkfifo(fifo)
    with pytest.raises(CodesFormatError, match=r"pipe\.codes: not a regular file"):
        read_codes(fifo)


def test_model_mismatch_names_both_models():
    h = make_header()
    with pytest.raises(ModelMismatchError, match="'tiny'.*'other'"):
        check_model(h, "other", "ab12")
    with pytest.raises(ModelMismatchError, match="ab12.*ff00"):
        check_model(h, "tiny", "ff00")
    assert issubclass(ModelMismatchError, CodesFormatError)
    check_model(h, "tiny", "AB12")


# -- fuzzing ----------------------------------------------------------------------------------

SAMPLES = {frames: sample_file(frames, 1000)[0] for frames in (0, 1, 7, 40)}


def decodes_cleanly_or_names_the_problem(data: bytes):
    """Decoding gives valid codes that can be written again, or a CodesFormatError."""
    try:
        codes, h = decode_codes_bytes(data)
    except CodesFormatError as err:
        assert str(err)
        return None
    assert codes.dtype == torch.int64 and codes.shape == (h.groups, h.levels, h.frames)
    assert codes.numel() == 0 or (codes.min() >= 0 and codes.max() < h.codebook_size)
    encode_codes_bytes(codes, h)
    return codes, h


@fuzz(1000)
@given(
    frames=st.sampled_from(sorted(SAMPLES)),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
    tail=st.binary(max_size=16),
    splice=st.one_of(
        st.none(), st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 64))
    ),
)
def test_fuzz_mutated_files(frames, flips, cut, tail, splice):
    original = SAMPLES[frames]
    data = bytearray(original)
    for position, bit in flips:
        data[position % len(data)] ^= 1 << bit
    if splice is not None:  # copy a run of the file over another place, growing or shrinking it
        source, target, length = splice
        run = bytes(data[source % len(data) :][:length])
        at = target % (len(data) + 1)
        data[at : at + length // 2] = run
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    data = bytes(data) + tail
    if decodes_cleanly_or_names_the_problem(data) is not None:
        assert data == original  # without the checksum recomputed, only the intact file reads


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70_000),  # near the valid ranges, so the checks past the types are reached
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.lists(st.integers(-5, 5), max_size=5),
    st.dictionaries(st.text(max_size=3), st.one_of(st.integers(), st.text(max_size=3)), max_size=3),
)


@fuzz(600)
@given(
    frames=st.sampled_from(sorted(SAMPLES)),
    changes=st.dictionaries(
        st.sampled_from(sorted(asdict(make_header())) + ["junk"]), JSON_VALUES, max_size=3
    ),
    drop=st.sampled_from([None] * 26 + sorted(asdict(make_header()))),  # one in three drops
)
def test_fuzz_header_fields_with_valid_checksum(frames, changes, drop):
    head, payload = split(SAMPLES[frames])
    head.update(changes)
    if drop is not None:
        head.pop(drop, None)
    decodes_cleanly_or_names_the_problem(rebuilt(head, payload))


@fuzz(400)
@given(
    frames=st.sampled_from(sorted(SAMPLES)),
    edits=st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.one_of(
                st.binary(max_size=4),
                st.text(alphabet='0123456789-+.eE" ,:[]{}', max_size=3).map(str.encode),
            ),
        ),
        min_size=1,
        max_size=3,
    ),
    length_delta=st.sampled_from([0, 0, 0, -1, 1, -7, 1 << 20]),
)
def test_fuzz_header_bytes_with_valid_checksum(frames, edits, length_delta):
    """Raw edits of the JSON text (and of the header length), checksum recomputed, so the
    parser and validator see the damage rather than the CRC."""
    data = SAMPLES[frames]
    (length,) = struct.unpack_from("<I", data, 8)
    head = bytearray(data[12 : 12 + length])
    for position, replacement in edits:
        at = position % (len(head) + 1)
        head[at : at + len(replacement)] = replacement
    rest = bytes(head) + data[12 + length : -4]
    claimed = max(0, len(head) + length_delta)
    decodes_cleanly_or_names_the_problem(
        with_crc(b"CODECS" + struct.pack("<HI", 1, claimed) + rest)
    )


@fuzz(200)
@given(
    codebook_size=st.integers(2, MAX_CODEBOOK_SIZE),
    shape=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(0, 30)),
    seed=st.integers(0, 2**32 - 1),
)
def test_fuzz_round_trip(codebook_size, shape, seed):
    codes = np.random.default_rng(seed).integers(0, codebook_size, shape)
    h = make_header(codebook_size, shape[0], shape[1])
    decoded, got = decode_codes_bytes(encode_codes_bytes(codes, h))
    assert np.array_equal(decoded.numpy(), codes) and got.frames == shape[2]
