"""What one training step gathers for the codebooks' EMA update, level by level, summed over
DDP ranks in one all-reduce.

    begin (rows per level on every rank) -> record each level that ran -> all_reduce
    -> Codebook.ema_update_ (codec/quantize/residual.py)

Dead-code candidates are drawn from the *global* batch (all ranks, in rank order): each rank
fills in the rows it holds and zeros elsewhere, and the all-reduce assembles them.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from codec.quantize import distributed as ddp
from codec.quantize.codebook import assignment_sums


@dataclasses.dataclass
class UpdateStatistics:
    """counts (levels, g, c), sums (levels, g, c, d), candidates (levels, g, c, d) (dead-code
    replacements; None without revival) and bad (1,) (> 0 when non-finite input was seen) are
    views into one fp32 buffer, `flat`, so that DDP sums them with one all-reduce. offsets and
    totals (levels,): rows held by the ranks before this one, and by all ranks."""

    flat: torch.Tensor
    counts: torch.Tensor
    sums: torch.Tensor
    candidates: torch.Tensor | None
    bad: torch.Tensor
    offsets: torch.Tensor
    totals: torch.Tensor

    @classmethod
    def begin(
        cls, hg: torch.Tensor, weights: list, *, codes: tuple[int, int], revive: bool, sync: bool
    ) -> UpdateStatistics:
        """Empty statistics for one step over len(weights) levels of hg (g, N, .), each level's
        rows weighted by its weight (N,) (None: every row counts), for `codes` = (codebook
        size, code size), with every rank's count of rows per level gathered when `sync`."""
        g, n_rows, _ = hg.shape
        c, d = codes
        level_rows = torch.stack([hg.new_tensor(n_rows) if w is None else w.sum() for w in weights])
        rank, _ = ddp.world()
        counts_by_rank = ddp.all_gather_counts(level_rows) if sync else level_rows[None]
        offsets = counts_by_rank[:rank].sum(0) if sync else torch.zeros_like(level_rows)
        levels = len(weights)
        shapes = {"counts": (levels, g, c), "sums": (levels, g, c, d), "bad": (1,)}
        if revive:
            shapes["candidates"] = (levels, g, c, d)
        sizes = [math.prod(shape) for shape in shapes.values()]
        flat = hg.new_zeros(sum(sizes), dtype=torch.float32)
        views = {
            name: part.view(shape) for (name, shape), part in zip(shapes.items(), flat.split(sizes))
        }
        views.setdefault("candidates", None)
        return cls(flat=flat, offsets=offsets, totals=counts_by_rank.sum(0), **views)

    def record(self, level: int, x, indices, weight, generator: torch.Generator) -> None:
        """Counts, sums and dead-code candidates of one level's rows x (g, N, d) assigned to
        `indices` (g, N), weighted by `weight` (N,) (None: every row counts)."""
        row_weight = x.new_ones(x.shape[1]) if weight is None else weight
        counts, sums = assignment_sums(x, indices, row_weight, self.counts.shape[-1])
        self.counts[level] = counts
        self.sums[level] = sums
        if self.candidates is not None:
            self.candidates[level] = self._dead_code_candidates(
                x, row_weight, self.offsets[level], self.totals[level], generator
            )

    def _dead_code_candidates(self, x, weight, offset, total, generator):
        """For every code of every group, one row drawn uniformly from the valid rows of the
        global batch; rows held by other ranks are zero here. x (g, N, d), weight (N,)
        -> (g, c, d)."""
        g, n_rows, d = x.shape
        c = self.counts.shape[-1]
        u = torch.rand((g, c), generator=generator).to(x.device)
        pick = (u * total).floor().long().clamp(max=(total.long() - 1).clamp(min=0))
        local = pick - offset.long()
        local_count = weight.sum().long()
        own = (local >= 0) & (local < local_count)
        cumulative = torch.cumsum((weight > 0).long(), 0)
        rows = torch.searchsorted(cumulative, local.clamp(min=0) + 1).clamp(max=n_rows - 1)
        picked = torch.gather(x, 1, rows.unsqueeze(-1).expand(-1, -1, d))
        return torch.where(own.unsqueeze(-1), picked, 0.0)

    def all_reduce(self, hg: torch.Tensor, *, sync: bool) -> torch.Tensor:
        """Mark non-finite input in hg, sum the statistics over ranks when `sync`, and return
        whether every rank's input was finite (a bool tensor: no host sync)."""
        self.bad[0] = (~torch.isfinite(hg.detach())).any().float()
        if sync:
            ddp.all_reduce_sum_(self.flat)
        return self.bad[0] == 0
