"""Reading EnCodec's .ecdc files: codes equal to EnCodec's own, and bad files named plainly."""

import io
import json
import os
import struct

import pytest
import torch
from references import reference

from codec.models.ecdc import (
    ENCODEC_MODELS,
    MAX_HEADER_BYTES,
    EcdcFormatError,
    read_ecdc,
    unpack_lsb_first,
)

encodec = reference("encodec")


def encoded_frames(ecdc) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The segments as EncodecModel.encode returns them and EncodecModel.decode takes them:
    (codes (1, num_codebooks, frames), scale float32 (1, 1) or None) per segment."""
    return [
        (s.codes, None if s.scale is None else torch.tensor([[s.scale]], dtype=torch.float32))
        for s in ecdc.segments
    ]


@pytest.fixture(scope="module")
def model_24k(encodec_reference):
    return encodec_reference.random_encodec(24000, small=False, seed=0)


@pytest.fixture(scope="module")
def model_48k(encodec_reference):
    return encodec_reference.random_encodec(48000, small=False, seed=1)


def compress(model, wav, bandwidth=None) -> bytes:
    model.bandwidth = bandwidth
    return encodec.compress(model, wav, use_lm=False)


def assert_same_frames(ecdc, model, wav):
    with torch.no_grad():
        frames = model.encode(wav[None])
    assert len(ecdc.segments) == len(frames)
    for segment, (codes, scale) in zip(ecdc.segments, frames):
        assert segment.codes.dtype == torch.int64
        assert torch.equal(segment.codes, codes)
        if scale is None:
            assert segment.scale is None
        else:  # float32 in the file, so exactly the value EnCodec computed
            assert segment.scale == scale.item()
    for ours, theirs in zip(encoded_frames(ecdc), frames):
        assert torch.equal(ours[0], theirs[0])
        assert (ours[1] is None) == (theirs[1] is None)
        assert ours[1] is None or torch.equal(ours[1], theirs[1])


@pytest.mark.parametrize(
    "length, bandwidth", [(24000, None), (24001, 6.0), (320, 1.5), (100, 3.0), (1, 24.0)]
)
def test_24khz_codes_equal_encodecs(model_24k, length, bandwidth):
    wav = 0.1 * torch.randn(1, length)
    ecdc = read_ecdc(compress(model_24k, wav, bandwidth))
    assert (ecdc.model_name, ecdc.audio_length, ecdc.sample_rate) == (
        "encodec_24khz",
        length,
        24000,
    )
    assert ecdc.num_codebooks == (32 if bandwidth is None else int(bandwidth * 1000 / 750))
    (segment,) = ecdc.segments
    assert segment.codes.shape == (1, ecdc.num_codebooks, -(-length // 320))
    assert_same_frames(ecdc, model_24k, wav)
    if length >= 24000:  # enough frames for random codebooks to give varied codes
        assert segment.codes[0, 0].unique().numel() > 1


@pytest.mark.parametrize(
    "length, bandwidth, frames",
    [
        (100800, None, [150, 150, 18]),  # 2.1 s: two full segments and a short one
        (48000, 6.0, [150, 2]),  # just over one stride: a 480-sample second segment
        (47520, 3.0, [149]),  # exactly one stride: one segment
        (200, 12.0, [1]),  # shorter than a hop
    ],
)
def test_48khz_codes_and_scales_equal_encodecs(model_48k, length, bandwidth, frames):
    wav = 0.1 * torch.randn(2, length)
    wav[:, 50000:] *= 3  # segments of different loudness, so of different scales
    ecdc = read_ecdc(compress(model_48k, wav, bandwidth))
    assert (ecdc.model_name, ecdc.audio_length, ecdc.sample_rate) == (
        "encodec_48khz",
        length,
        48000,
    )
    assert [segment.codes.shape[-1] for segment in ecdc.segments] == frames
    assert all(segment.scale > 0 for segment in ecdc.segments)
    assert_same_frames(ecdc, model_48k, wav)


def test_reads_a_path_and_names_it(tmp_path, model_24k):
    data = compress(model_24k, 0.1 * torch.randn(1, 960), 1.5)
    path = tmp_path / "speech.ecdc"
    path.write_bytes(data)
    assert torch.equal(read_ecdc(path).segments[0].codes, read_ecdc(data).segments[0].codes)
    path.write_bytes(data[:-1])
    with pytest.raises(EcdcFormatError, match=r"^.*speech\.ecdc: truncated"):
        read_ecdc(path)
    with pytest.raises(EcdcFormatError, match="missing.ecdc: cannot read"):
        read_ecdc(tmp_path / "missing.ecdc")
    with pytest.raises(EcdcFormatError, match="cannot read .*directory"):
        read_ecdc(tmp_path)
    os.mkfifo(tmp_path / "pipe.ecdc")  # reading must not wait for a writer
    with pytest.raises(EcdcFormatError, match="pipe.ecdc: not a regular file"):
        read_ecdc(tmp_path / "pipe.ecdc")


def test_frame_counts_follow_the_model_table():
    layout = ENCODEC_MODELS["encodec_48khz"]
    assert layout.segment_lengths(100800) == [48000, 48000, 100800 - 2 * 47520]
    assert [layout.frames(n) for n in layout.segment_lengths(100800)] == [150, 150, 18]
    assert layout.num_segments(100800) == 3 == len(layout.segment_lengths(100800))
    assert ENCODEC_MODELS["encodec_24khz"].segment_lengths(12345) == [12345]


def test_unpack_matches_encodecs_bit_packer():
    from encodec.binary import BitPacker

    generator = torch.Generator().manual_seed(0)
    for bits in (1, 3, 8, 10, 13, 16):
        values = torch.randint(0, 1 << bits, (1001,), generator=generator).tolist()
        stream = io.BytesIO()
        packer = BitPacker(bits, stream)
        for value in values:
            packer.push(value)
        packer.flush()
        unpacked = unpack_lsb_first(stream.getvalue(), bits)
        assert unpacked[: len(values)].tolist() == values
        assert len(unpacked) - len(values) < 8 / bits + 1  # only the padding's ghost values


# -- bad input ----------------------------------------------------------------------------------


def ecdc_bytes(header, payload=b"", magic=b"ECDC", version=0, header_length=None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    length = len(raw) if header_length is None else header_length
    return struct.pack("!4sBI", magic, version, length) + raw + payload


GOOD_HEADER = {"m": "encodec_24khz", "al": 640, "nc": 2, "lm": False}
GOOD_PAYLOAD = bytes(5)  # 2 frames x 2 codes x 10 bits


def bad(data, pattern):
    with pytest.raises(EcdcFormatError, match=pattern) as caught:
        read_ecdc(data)
    assert "\n" not in str(caught.value)


def test_the_hand_made_file_is_good():
    ecdc = read_ecdc(ecdc_bytes(GOOD_HEADER, GOOD_PAYLOAD))
    assert ecdc.segments[0].codes.shape == (1, 2, 2)
    assert ecdc.segments[0].codes.eq(0).all()


def two_segment_48khz_file() -> bytes:
    """48000 samples at 2 codebooks: segments of 150 and 2 frames, each after its scale."""
    header = {"m": "encodec_48khz", "al": 48000, "nc": 2, "lm": False}
    first = struct.pack("!f", 0.25) + bytes(range(256)) + bytes(119)  # 150 x 2 x 10 bits
    second = struct.pack("!f", 0.5) + bytes(5)  # 2 x 2 x 10 bits
    return ecdc_bytes(header, first + second)


def test_truncated_at_every_point_is_named(model_24k):
    from_encodec = compress(model_24k, 0.1 * torch.randn(1, 700), 1.5)
    for data in (from_encodec, two_segment_48khz_file()):
        assert read_ecdc(data).segments[-1].codes.shape[-1] in (2, 3)
        header_end = 9 + struct.unpack("!I", data[5:9])[0]
        cuts = {0, 1, 3, 4, 5, 8, 9, header_end - 1, header_end, header_end + 2}
        cuts |= {header_end + 5, header_end + 200, len(data) - 7, len(data) - 1}
        for cut in sorted(cut for cut in cuts if 0 <= cut < len(data)):
            bad(data[:cut], "truncated")


def test_trailing_bytes_are_refused(model_24k):
    data = compress(model_24k, 0.1 * torch.randn(1, 700), 1.5)
    bad(data + b"\0", "1 bytes after the last segment")


def test_wrong_magic_and_version():
    bad(ecdc_bytes(GOOD_HEADER, GOOD_PAYLOAD, magic=b"RIFF"), "not an .ecdc file")
    bad(b"RIFF", "not an .ecdc file")
    bad(ecdc_bytes(GOOD_HEADER, GOOD_PAYLOAD, version=1), "unsupported .ecdc version 1")


def test_lm_coded_files_are_refused():
    bad(ecdc_bytes({**GOOD_HEADER, "lm": True}, GOOD_PAYLOAD), "uses the LM entropy coder")


@pytest.mark.parametrize(
    "header, pattern",
    [
        (b"{not json", "header is not valid JSON"),
        (b"\xff\xfe", "header is not valid JSON"),
        (b'{"m": NaN}', "header is not valid JSON"),
        (b"[1, 2]", "not an object"),
        ({"m": "encodec_24khz", "al": 640, "nc": 2}, "lacks the field.* lm"),
        ({**GOOD_HEADER, "lm": 0}, "lm must be true or false"),
        ({**GOOD_HEADER, "m": "encodec_96khz"}, "model .*encodec_96khz.* is not one of"),
        ({**GOOD_HEADER, "m": ["x"]}, "is not one of"),
        ({**GOOD_HEADER, "al": 0}, "al must be an integer >= 1"),
        ({**GOOD_HEADER, "al": 640.0}, "al must be an integer"),
        ({**GOOD_HEADER, "al": True}, "al must be an integer"),
        ({**GOOD_HEADER, "nc": 0}, r"nc must be an integer in \[1, 32\]"),
        ({**GOOD_HEADER, "nc": 33}, r"nc must be an integer in \[1, 32\]"),
        ({**GOOD_HEADER, "m": "encodec_48khz", "nc": 17}, r"\[1, 16\] for encodec_48khz"),
    ],
)
def test_bad_headers_are_named(header, pattern):
    bad(ecdc_bytes(header, GOOD_PAYLOAD), pattern)


def test_huge_declared_lengths_are_refused_before_reading():
    # a header length over the limit, and one under it but past the end of the bytes
    bad(ecdc_bytes(GOOD_HEADER, GOOD_PAYLOAD, header_length=0xFFFFFFFF), "over the limit")
    bad(ecdc_bytes(GOOD_HEADER, GOOD_PAYLOAD, header_length=MAX_HEADER_BYTES), "truncated")
    # audio lengths whose segments or frames could not fit in the bytes: refused from arithmetic
    for model, length in [
        ("encodec_48khz", 10**18),
        ("encodec_24khz", 10**18),
        ("encodec_24khz", 2**63),
    ]:
        header = {**GOOD_HEADER, "m": model, "al": length}
        bad(ecdc_bytes(header, GOOD_PAYLOAD), "truncated")


def test_bad_scales_are_refused():
    header = {"m": "encodec_48khz", "al": 320, "nc": 2, "lm": False}
    good = struct.pack("!f", 0.5) + bytes(3)  # 1 frame x 2 codes x 10 bits
    assert read_ecdc(ecdc_bytes(header, good)).segments[0].scale == 0.5
    for scale in (0.0, -1.0, float("nan"), float("inf")):
        bad(ecdc_bytes(header, struct.pack("!f", scale) + bytes(3)), "not a positive number")
