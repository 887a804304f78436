"""The few collectives the quantizer needs, all no-ops outside an initialised process group.

Every collective here runs only in training-mode forwards and never depends on the grad mode,
so a rank under `torch.no_grad()` still takes part and nothing hangs.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world_size), (0, 1) when no process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_distributed() -> bool:
    return world()[1] > 1


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor in place over all ranks."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's `value` on every rank."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.broadcast(t, src=0)
    return int(t.item())


def all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` of shape (k, n_rank, d) over ranks in rank order -> (k, sum n_rank, d).

    Ranks may hold different n; used once, for k-means initialisation.
    """
    if not is_distributed():
        return x
    _, size = world()
    n = torch.tensor([x.shape[1]], dtype=torch.long, device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(size)]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    padded = x.new_zeros(x.shape[0], max(sizes), x.shape[2])
    padded[:, : x.shape[1]] = x
    gathered = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(gathered, padded.contiguous())
    return torch.cat([g[:, :s] for g, s in zip(gathered, sizes)], dim=1)


def all_gather_counts(counts: torch.Tensor) -> torch.Tensor:
    """Stack a small tensor from every rank: (...) -> (world, ...)."""
    if not is_distributed():
        return counts.unsqueeze(0)
    _, size = world()
    out = [torch.empty_like(counts) for _ in range(size)]
    dist.all_gather(out, counts.contiguous())
    return torch.stack(out)
