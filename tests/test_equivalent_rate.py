import math

from codec.equivalent_rate import EquivalentRate, equivalent_rate

OPUS = [(6.0, 1.9), (8.0, 2.4), (10.0, 2.5), (16.0, 3.5)]  # (kbps, PESQ)


def test_interpolates_where_the_reference_first_reaches_the_score():
    assert equivalent_rate(2.15, OPUS, True) == EquivalentRate(7.0)
    assert equivalent_rate(3.0, OPUS, True) == EquivalentRate(13.0)
    assert str(equivalent_rate(3.0, OPUS, True)) == "13.0"


def test_bounds_outside_the_ladder():
    assert equivalent_rate(1.5, OPUS, True) == EquivalentRate(6.0, "<")
    assert equivalent_rate(4.0, OPUS, True) == EquivalentRate(16.0, ">")
    assert str(equivalent_rate(4.0, OPUS, True)) == ">16"


def test_lower_is_better_and_non_monotone_curves():
    mel = [(6.0, 0.40), (8.0, 0.42), (10.0, 0.20)]  # Opus 8 worse than 6 on mel
    assert math.isclose(equivalent_rate(0.30, mel, False).kbps, 8.0 + 2.0 * 0.12 / 0.22)
    assert equivalent_rate(0.41, mel, False) == EquivalentRate(6.0, "<")


def test_undefined_scores():
    assert equivalent_rate(math.nan, OPUS, True) is None
    assert equivalent_rate(2.0, [(6.0, math.nan)], True) is None
    assert equivalent_rate(2.0, [(8.0, 2.4), (6.0, math.nan)], True) == EquivalentRate(8.0, "<")
