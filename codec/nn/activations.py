"""Activations for the SEANet blocks."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = ("elu", "snake")


def snake(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """x + sin^2(alpha x) / alpha, alpha broadcast against x."""
    return x + torch.sin(alpha * x).pow(2) / (alpha + 1e-9)


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
