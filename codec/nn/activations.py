"""Activations for the SEANet and DAC blocks."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = ("elu", "snake")


def snake(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """x + (alpha + 1e-9)^-1 sin^2(alpha x), alpha broadcast against x (DAC's expression, in
    its order of operations, so results match it bit for bit).

    Without autograd the whole expression runs in one output buffer (alpha * x, then sin,
    square, scale and add in place): no temporary per operation, 1.5-1.8x faster on CPU than
    the plain expression or DAC's torch.jit.script of it (scripts/bench/bench_snake.py). With
    autograd the plain expression runs: the in-place steps would overwrite what the backward
    pass needs."""
    scale = (alpha + 1e-9).reciprocal()
    if torch.is_grad_enabled() and (x.requires_grad or alpha.requires_grad):
        return x + scale * torch.sin(alpha * x).pow(2)
    y = alpha * x
    return y.sin_().square_().mul_(scale).add_(x)


class Snake(nn.Module):
    """x + sin^2(alpha x) / alpha with a learnable alpha per channel (BigVGAN, DAC): a periodic
    inductive bias for audio. (b, c, t) -> (b, c, t)."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return snake(x, self.alpha)


def make_activation(name: str, channels: int, inplace: bool = False) -> nn.Module:
    """`inplace` only where the input is a fresh tensor nothing else reads."""
    if name == "elu":
        return nn.ELU(inplace=inplace)
    if name == "snake":
        return Snake(channels)
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
