"""Structured quantizer dropout: how many residual levels a training step keeps.

The seed's rule (SoundStream / EnCodec): draw an index i uniformly in [cutoff, q), keep
round_up(i + 1, multiple_of) levels, at most q. Draws come from a CPU generator that is
identical on every rank, so no device sync and no collective is needed per step.
"""

from __future__ import annotations

import math
import random

import torch


def kept_levels(index: int, num_levels: int, multiple_of: int) -> int:
    """Levels kept when the drawn dropout index is `index` (0-based, in [cutoff, q))."""
    return min(math.ceil((index + 1) / multiple_of) * multiple_of, num_levels)


def draw_depth(
    num_levels: int,
    cutoff: int,
    multiple_of: int,
    generator: torch.Generator,
    fixed_seed: int | None = None,
) -> int:
    """One depth for the whole step; `fixed_seed` reproduces the seed's `random.Random` draw."""
    if fixed_seed is not None:
        index = random.Random(fixed_seed).randrange(cutoff, num_levels)
    else:
        index = int(torch.randint(cutoff, num_levels, (1,), generator=generator))
    return kept_levels(index, num_levels, multiple_of)


def draw_item_depths(
    batch: int,
    num_levels: int,
    cutoff: int,
    multiple_of: int,
    prob: float,
    generator: torch.Generator,
    rank: int = 0,
    world_size: int = 1,
) -> torch.Tensor:
    """Per-item depths, shape (batch,): a fraction `prob` of items draws a structured depth, the
    rest keep all levels (DAC drops half the items). Each rank takes its own row of a shared
    (world, batch) draw so that ranks stay in step without talking."""
    index = torch.randint(cutoff, num_levels, (world_size, batch), generator=generator)
    dropped = torch.rand((world_size, batch), generator=generator) < prob
    index, dropped = index[rank], dropped[rank]
    depth = ((index + 1 + multiple_of - 1) // multiple_of * multiple_of).clamp(max=num_levels)
    return torch.where(dropped, depth, torch.full_like(depth, num_levels))
