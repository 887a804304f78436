"""Optimisers and the learning-rate schedule from the `optim` config group."""

from __future__ import annotations

import functools
import math

import torch
from omegaconf import DictConfig


def lr_factor(step: int, warmup: int, total: int, decay: str, floor: float) -> float:
    """The learning rate at `step` as a fraction of optim.lr: a linear warmup, then constant or
    a cosine from 1 down to `floor` at `total` steps (and `floor` after)."""
    if decay not in ("constant", "cosine"):  # checked first: LambdaLR calls this at step 0
        raise ValueError(f"optim.decay must be constant or cosine, not {decay!r}")
    if step < warmup:
        return (step + 1) / warmup
    if decay == "constant":
        return 1.0
    done = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * done))


def make_optimizer(params, optim: DictConfig) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if optim.name == "adamw" else torch.optim.Adam
    return cls(params, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)


def make_schedule(optimizer, optim: DictConfig, total_steps: int):
    factor = functools.partial(
        lr_factor,
        warmup=int(optim.warmup_steps),
        total=int(total_steps),
        decay=optim.decay,
        floor=float(optim.min_lr_ratio),
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
