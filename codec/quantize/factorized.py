"""Factorized codes (Yu et al., ViT-VQGAN; DAC): each level of a residual quantizer looks its
code up in a small space of its own.

Per level l and group: z_e = in_proj_l(r) (d -> k, with bias, k = codebook_dim, e.g. 8), the
code whose L2-normalised vector is nearest to the L2-normalised z_e, and out_proj_l(code)
(k -> d, with bias) of the RAW code back in the full space, where the residual is updated.
Both projections are weight-normed (w = g v / |v| per output row), as DAC's 1x1 convs.

Unlike vector-quantize-pytorch's `use_cosine_sim`, which keeps its codebook and returns the
normalised vector, only the search is normalised here: the codebook is free and its raw
vector is what the level outputs (DAC).
"""

from __future__ import annotations

import torch
from torch import nn


def _weight_normed(v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """v (..., out, in), g (..., out, 1) -> g v / |v| (norm over `in`)."""
    return v * (g / v.norm(dim=-1, keepdim=True))


class FactorizedProjections(nn.Module):
    """Per level and group, in_proj (dim -> codebook_dim) and out_proj (codebook_dim -> dim).

    Parameters: in_v (q, g, k, d), in_g (q, g, k, 1), in_bias (q, g, k); out_v (q, g, d, k),
    out_g (q, g, d, 1), out_bias (q, g, d)."""

    def __init__(self, levels: int, groups: int, dim: int, codebook_dim: int):
        super().__init__()
        q, g, d, k = levels, groups, dim, codebook_dim
        self.in_v = nn.Parameter(torch.randn(q, g, k, d) * d**-0.5)
        self.in_g = nn.Parameter(self.in_v.detach().norm(dim=-1, keepdim=True))
        self.in_bias = nn.Parameter(torch.zeros(q, g, k))
        self.out_v = nn.Parameter(torch.randn(q, g, d, k) * k**-0.5)
        self.out_g = nn.Parameter(self.out_v.detach().norm(dim=-1, keepdim=True))
        self.out_bias = nn.Parameter(torch.zeros(q, g, d))

    def project_in(self, level: int, x: torch.Tensor) -> torch.Tensor:
        """x (g, N, d) -> z_e (g, N, k)."""
        weight = _weight_normed(self.in_v[level], self.in_g[level])  # (g, k, d)
        return torch.baddbmm(self.in_bias[level][:, None], x, weight.transpose(1, 2))

    def project_out(self, level: int, z: torch.Tensor) -> torch.Tensor:
        """z (g, N, k) -> (g, N, d)."""
        weight = _weight_normed(self.out_v[level], self.out_g[level])  # (g, d, k)
        return torch.baddbmm(self.out_bias[level][:, None], z, weight.transpose(1, 2))

    def project_out_levels(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (q', g, N, k) of the first q' levels -> (q', g, N, d)."""
        levels = codes.shape[0]
        weight = _weight_normed(self.out_v[:levels], self.out_g[:levels])  # (q', g, d, k)
        return torch.einsum("qgnk,qgdk->qgnd", codes, weight) + self.out_bias[:levels, :, None]
