"""Optimisers and the learning-rate schedule from the `optim` config group."""

from __future__ import annotations

import dataclasses
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


PARTS = ("encoder", "quantizer", "decoder")


def freeze(model: torch.nn.Module, parts) -> None:
    """Keep `parts` of a Codec (names from PARTS) as they are while the rest trains: their
    weights get no gradients and, for the quantizer, its codebooks no EMA step, statistics or
    dead-code revival (`freeze_codebook`). With the encoder and quantizer frozen, the codes of
    a file stay what the starting model gives, and only the decoder learns to play them."""
    unknown = [name for name in parts if name not in PARTS]
    if unknown:
        raise ValueError(f"optim.frozen: {unknown[0]!r} is not a part; the parts are {PARTS}")
    if set(parts) >= set(PARTS):
        raise ValueError(f"optim.frozen: every part is frozen ({list(parts)}); nothing would train")
    for name in parts:
        part = getattr(model, name)
        part.requires_grad_(False)
        if name == "quantizer":
            part.options = dataclasses.replace(part.options, freeze_codebook=True)


def make_optimizer(params, optim: DictConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over the `params` that require gradients (frozen parts have none)."""
    cls = torch.optim.AdamW if optim.name == "adamw" else torch.optim.Adam
    params = [p for p in params if p.requires_grad]
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
