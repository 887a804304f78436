"""Declared limits (codec.bounds): the words of the rule a value breaks, for every kind of
field the configs and file headers declare."""

from __future__ import annotations

import pytest

from codec.bounds import is_int, is_number, rule_broken
from codec.models.config import CodecConfig
from codec.models.options import ConfigError


@pytest.mark.parametrize(
    "kind, value, limits, rule",
    [
        (int, 3, {"range": (1, 64)}, None),
        (int, 0, {"range": (1, 64)}, "an integer in [1, 64]"),
        (int, True, {"range": (1, 64)}, "an integer in [1, 64]"),  # JSON true is not 1
        (int, 5.0, {}, "an integer"),
        (int, 0, {"range": (1, None)}, "an integer >= 1"),
        (float, 10**400, {"range": (-70, 0)}, "a number in [-70, 0]"),  # no OverflowError
        (float, float("nan"), {}, "a number"),
        (bool, 0, {}, "true or false"),
        (str, "", {"length": (1, 256)}, "a string of 1..256 characters"),
        (str, "gelu", {"choices": ("elu", "snake")}, "one of elu, snake"),
        (list[int], [8, 4], {"range": (1, 64), "length": (1, 8)}, None),
        (
            list[int],
            [8, 99],
            {"range": (1, 64)},
            "a list of 0 to 64 values, each an integer in [1, 64]",
        ),
        (list[int], [], {"length": (1, 8)}, "a list of 1 to 8 values"),
        (int | None, None, {"range": (1, 8)}, None),
        (int | None, "x", {"range": (1, 8)}, "null or an integer in [1, 8]"),
        (dict, {"a": 1}, {"length": (0, 0)}, "an object of at most 0 entries"),
    ],
)
def test_rules_in_words(kind, value, limits, rule):
    assert rule_broken(kind, value, **limits) == rule


def test_numbers_are_not_bools_and_are_finite():
    assert is_int(2**80) and not is_int(True) and not is_int(2.0)
    assert is_number(2**80) and is_number(-1.5) and not is_number(float("inf"))


def test_the_model_config_declares_its_limits_the_same_way():
    with pytest.raises(ConfigError, match=r"^sample_rate must be an integer in \[1000, 384000\]$"):
        CodecConfig(sample_rate=10**400)
    with pytest.raises(ConfigError, match=r"^loudness_lufs must be null or a number in \[-70, 0\]"):
        CodecConfig(loudness_lufs=float("inf"))
    with pytest.raises(ConfigError, match="model_id must be a string of 1..256 characters"):
        CodecConfig(model_id="")
