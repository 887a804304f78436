"""One set of limits: the model config and the .codes header accept exactly the same ranges,
and every model the toolkit builds or imports fits them."""

import pytest
import torch

from codec import limits
from codec.codes_file import CodesFormatError, CodesHeader, decode_codes_bytes, encode_codes_bytes
from codec.models import CodecConfig, ConfigError

SHARED = {
    "sample_rate": (limits.MIN_SAMPLE_RATE, limits.MAX_SAMPLE_RATE),
    "channels": (limits.MIN_CHANNELS, limits.MAX_CHANNELS),
    "groups": (limits.MIN_GROUPS, limits.MAX_GROUPS),
    "levels": (limits.MIN_LEVELS, limits.MAX_LEVELS),
    "codebook_size": (limits.MIN_CODEBOOK_SIZE, limits.MAX_CODEBOOK_SIZE),
}

# (sample rate, channels, groups, levels, codebook size, frame rate)
KNOWN_MODELS = {
    "encodec_24khz": (24000, 1, 1, 32, 1024, 75.0),
    "encodec_48khz": (48000, 2, 1, 16, 1024, 150.0),
    "dac_16khz": (16000, 1, 1, 12, 1024, 50.0),
    "dac_24khz": (24000, 1, 1, 32, 1024, 75.0),
    "dac_44khz": (44100, 1, 1, 9, 1024, 44100 / 512),
    "hifi_codec_16khz": (16000, 1, 2, 2, 1024, 50.0),
}


def header(**fields) -> CodesHeader:
    base = dict(
        model_id="m",
        weights_hash="ab",
        sample_rate=16000,
        channels=1,
        length=320,
        frame_rate=50.0,
        groups=1,
        levels=1,
        codebook_size=1024,
    )
    return CodesHeader(**{**base, **fields})


def round_trip(h: CodesHeader) -> CodesHeader:
    codes = torch.full((h.groups, h.levels, 1), h.codebook_size - 1)
    return decode_codes_bytes(encode_codes_bytes(codes, h))[1]


QUANTIZER = ("groups", "levels", "codebook_size")


def config(**fields) -> CodecConfig:
    """A model config with `fields` set, quantizer fields in its quantizer section."""
    groups = fields.get("groups", 1)
    top = {k: v for k, v in fields.items() if k not in QUANTIZER}
    quantizer = {k: v for k, v in fields.items() if k in QUANTIZER}
    if isinstance(groups, int) and groups > 0:
        top.setdefault("dimension", 64 * groups)
    return CodecConfig().replace(quantizer=quantizer, **top)


@pytest.mark.parametrize("name", sorted(SHARED))
def test_config_and_codes_header_accept_the_same_range(name):
    low, high = SHARED[name]
    for value in (low, high):
        config(**{name: value})
        assert getattr(round_trip(header(**{name: value})), name) == value
    for value in (low - 1, high + 1):
        with pytest.raises(ConfigError, match=name):
            config(**{name: value})
        with pytest.raises(CodesFormatError, match=name):
            round_trip(header(**{name: value}))


@pytest.mark.parametrize("name", sorted(KNOWN_MODELS))
def test_every_known_model_fits(name):
    rate, channels, groups, levels, size, frame_rate = KNOWN_MODELS[name]
    shape = dict(sample_rate=rate, channels=channels, groups=groups, levels=levels)
    config(codebook_size=size, **shape)
    got = round_trip(header(codebook_size=size, frame_rate=frame_rate, **shape))
    assert (got.groups, got.levels, got.codebook_size) == (groups, levels, size)
