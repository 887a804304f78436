"""Structured quantizer dropout: how many residual levels a training step keeps.

The seed's rule (SoundStream / EnCodec): draw an index i uniformly in [cutoff, q), keep
round_up(i + 1, multiple_of) levels, at most q. Draws come from a CPU generator that is
identical on every rank, so no device sync and no collective is needed per step.
"""

from __future__ import annotations

import math
import random

import torch

from codec.quantize import distributed as ddp


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


def levels_to_run(
    options, *, training: bool, batch: int, fixed_seed, generator, num_levels: int | None
) -> tuple[int, torch.Tensor | None]:
    """This call's (levels to run, per-item depths (batch,) or None): dropout's draw in
    training (ResidualOptions' quantize_dropout_* settings), capped by `num_levels`."""
    q = options.num_quantizers
    levels, item_depths = q, None
    if training and options.dropout:
        levels, item_depths = _dropout_depths(options, batch, fixed_seed, generator)
    if num_levels is not None:
        if not 1 <= num_levels <= q:
            raise ValueError(f"num_levels must be in [1, {q}], got {num_levels}")
        levels = min(levels, num_levels)
    return levels, item_depths


def _dropout_depths(options, batch: int, fixed_seed: int | None, generator: torch.Generator):
    q = options.num_quantizers
    cutoff, multiple = options.quantize_dropout_cutoff_index, options.quantize_dropout_multiple_of
    prob = options.quantize_dropout_prob
    if options.quantize_dropout_per_item:
        rank, size = ddp.world()
        depths = draw_item_depths(batch, q, cutoff, multiple, prob, generator, rank, size)
        # Under DDP every rank must run the same levels (the statistics are all-reduced
        # level by level), and one rank's deepest item need not be another's.
        return (q if size > 1 else int(depths.max())), depths
    depth = draw_depth(q, cutoff, multiple, generator, fixed_seed)
    if fixed_seed is None and prob < 1.0:
        if float(torch.rand((), generator=generator)) >= prob:
            depth = q
    return depth, None


def level_weights(*, valid, item_depths, levels: int, rows_per_item: int, device) -> list:
    """Per level run, the (N,) float weight of the rows that enter statistics and losses:
    real input (`valid`, the mask) in items deep enough (`item_depths`, per-item dropout);
    None where every row does."""
    row_depth = None
    if item_depths is not None:
        row_depth = item_depths.to(device).repeat_interleave(rows_per_item)
    weights = []
    for level in range(levels):
        active = valid
        if row_depth is not None:
            deep = row_depth > level
            active = deep if active is None else active & deep
        weights.append(None if active is None else active.float())
    return weights
