"""The Opus-equivalent bitrate: the rate at which a reference codec's rate-quality curve,
interpolated linearly, first scores as well as ours.

    ours: score s at our bitrate;  reference: [(kbps_i, score_i)] at a ladder of rates
    -> the lowest kbps where the reference reaches s, "<" the lowest rate compared when even
       that one scores at least as well, ">" the highest when none does

Lyra v2's "6 kbps equals Opus at 13 kbps" is this kind of figure (there from listeners).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class EquivalentRate:
    """`kbps`, or with `bound` "<" / ">" a rate outside the reference's ladder: below its
    lowest rate (which already scores as well) or above its highest (which never does)."""

    kbps: float
    bound: str = ""

    def __str__(self) -> str:
        return f"{self.bound}{self.kbps:g}" if self.bound else f"{self.kbps:.1f}"

    def as_dict(self) -> dict:
        return {"kbps": self.kbps, "bound": self.bound}


def equivalent_rate(
    score: float, curve: list[tuple[float, float]], higher_is_better: bool
) -> EquivalentRate | None:
    """Where `curve` [(kbps, score)] (any order, NaN scores dropped) first reaches `score`;
    None when `score` is NaN or the curve has no finite point."""
    points = sorted((k, s) for k, s in curve if math.isfinite(s))
    if not points or not math.isfinite(score):
        return None
    sign = 1.0 if higher_is_better else -1.0
    target = sign * score
    rates, goods = [k for k, _ in points], [sign * s for _, s in points]
    if goods[0] >= target:
        return EquivalentRate(rates[0], "<")
    for (r0, g0), (r1, g1) in zip(zip(rates, goods), zip(rates[1:], goods[1:])):
        if g0 < target <= g1:
            return EquivalentRate(r0 + (target - g0) / (g1 - g0) * (r1 - r0))
    return EquivalentRate(rates[-1], ">")
