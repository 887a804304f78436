"""What every DDP rank must agree on, so that a fault on one rank cannot split the run:

    resume_state      the checkpoint to resume from: the newest step that every rank can read
    write_outcome     whether rank 0's checkpoint write succeeded (all ranks stop together)
    rng_states        each rank's random state, gathered for rank 0's checkpoint

Alone (world 1) each is the plain single-process answer, without a collective.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from codec.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, step_of

NONE = -1  # the step of "no readable checkpoint"


def _newest_readable(folder: Path, at_most: float) -> tuple[int, dict | None]:
    for path in reversed(list_checkpoints(folder)):
        if step_of(path) > at_most:
            continue
        try:
            return step_of(path), load_checkpoint(path) | {"path": str(path)}
        except CheckpointError as err:
            print(f"warning: {err}; trying an older checkpoint", file=sys.stderr)
    return NONE, None


def _steps_of_all(step: int, world: int, device) -> list[int]:
    mine = torch.tensor([step], dtype=torch.long, device=device)
    every = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(every, mine)
    return [int(t) for t in every]


def resume_state(folder, world: int = 1, device=None) -> dict | None:
    """The newest checkpoint in `folder` that every rank reads, or None when there is none.

    Each rank proposes the newest checkpoint it can read; while they differ, every rank drops
    to the oldest proposal and tries again, so a checkpoint that is damaged on one rank only
    (a half-synced network file system, a read error) makes all ranks resume from the same
    older step. A rank that reads none while another reads one is a run_dir that the ranks do
    not share: ValueError on every rank."""
    folder = Path(folder)
    bound = float("inf")
    while True:
        step, state = _newest_readable(folder, bound)
        if world == 1:
            return state
        steps = _steps_of_all(step, world, device)
        if min(steps) == max(steps):
            return state
        if min(steps) == NONE:
            blind = [rank for rank, s in enumerate(steps) if s == NONE]
            raise ValueError(
                f"{folder}: rank(s) {', '.join(map(str, blind))} read no checkpoint there while "
                f"rank {steps.index(max(steps))} reads step {max(steps)}; every rank must see "
                "the same run_dir (a file system that all nodes share)"
            )
        if step != min(steps):
            print(
                f"note: resuming from step {min(steps)}, the newest checkpoint every rank reads "
                f"(steps read by rank: {steps})",
                file=sys.stderr,
            )
        bound = min(steps)


def write_outcome(failure: str | None, world: int = 1, device=None) -> None:
    """Raise SystemExit(failure) on every rank when rank 0's write failed (its message is the
    one given on rank 0); without this the other ranks would wait for rank 0 in their next
    collective until the process group's timeout."""
    if world > 1:
        message = [failure]
        dist.broadcast_object_list(message, src=0, device=device)
        failure = message[0]
    if failure:
        raise SystemExit(failure)


def rng_state() -> dict:
    """This process's random state: torch's CPU generator, Python's, and CUDA's when in use."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def rng_states(world: int = 1, device=None) -> list[dict]:
    """Every rank's rng_state(), in rank order (a collective under DDP)."""
    if world == 1:
        return [rng_state()]
    every = [None] * world
    dist.all_gather_object(every, rng_state())
    return every


def set_rng_state(saved, rank: int) -> bool:
    """Restore this rank's random state from a checkpoint's "rng" entry: a list by rank, or
    (checkpoints written before it was one) a single state that every rank takes. False when
    the list has no entry for `rank` (a run resumed on more ranks than it was saved from)."""
    if isinstance(saved, dict):
        state = saved
    elif rank < len(saved):
        state = saved[rank]
    else:
        return False
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    return True


def _as_tuple(value):
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value
