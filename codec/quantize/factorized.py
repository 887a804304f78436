"""Factorized codes (Yu et al., ViT-VQGAN; DAC): each level of a residual quantizer looks its
code up in a small space of its own; a kind of code of codec/quantize/levels.py.

Per level l and group: z_e = in_proj_l(r) (d -> k, with bias, k = codebook_dim, e.g. 8), the
code whose L2-normalised vector is nearest to the L2-normalised z_e, and out_proj_l(code)
(k -> d, with bias) of the RAW code back in the full space, where the residual is updated.
Both projections are weight-normed (w = g v / |v| per output row), as DAC's 1x1 convs.

Unlike vector-quantize-pytorch's `use_cosine_sim`, which keeps its codebook and returns the
normalised vector, only the search is normalised here: the codebook is free and its raw
vector is what the level outputs (DAC).

A level adds out_proj_l(z_e + sg(code - z_e)), whose gradient reaches the encoder through the
level's projections and trains out_proj from the reconstruction, so the stack needs no
straight-through estimator of its own. Each level's loss is commitment_weight *
mse(z_e, sg(code)), plus codebook_weight * mse(sg(z_e), code) for a learnable codebook (DAC:
0.25 and 1); an EMA codebook averages the projected z_e instead.
"""

from __future__ import annotations

import torch
from torch import nn

from codec.quantize.levels import weighted_mse


def _weight_normed(v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """v (..., out, in), g (..., out, 1) -> g v / |v| (norm over `in`)."""
    return v * (g / v.norm(dim=-1, keepdim=True))


class FactorizedCodes(nn.Module):
    """Per level and group, in_proj (dim -> codebook_dim) and out_proj (codebook_dim -> dim).

    Parameters: in_v (q, g, k, d), in_g (q, g, k, 1), in_bias (q, g, k); out_v (q, g, d, k),
    out_g (q, g, d, 1), out_bias (q, g, d)."""

    straight_through = False
    normalized_search = True
    teacher_forcing = False

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

    def weights(self) -> tuple[torch.Tensor, ...]:
        """Every level's weights with weight norm applied: in (q, g, k, d), in bias (q, g, k),
        out (q, g, d, k), out bias (q, g, d)."""
        w_in = _weight_normed(self.in_v, self.in_g)
        w_out = _weight_normed(self.out_v, self.out_g)
        return w_in, self.in_bias, w_out, self.out_bias

    def project_out_levels(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (q', g, N, k) of the first q' levels -> (q', g, N, d)."""
        levels = codes.shape[0]
        weight = _weight_normed(self.out_v[:levels], self.out_g[:levels])  # (q', g, d, k)
        return torch.einsum("qgnk,qgdk->qgnd", codes, weight) + self.out_bias[:levels, :, None]

    # -- the level's steps (codec/quantize/levels.py) ------------------------------------------

    def level_input(self, level: int, residual: torch.Tensor) -> torch.Tensor:
        return self.project_in(level, residual)

    def level_output(self, level: int, z_e: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.project_out(level, z_e + (code - z_e).detach())

    def code_output(self, level: int, code: torch.Tensor) -> torch.Tensor:
        return self.project_out(level, code)

    def decode_levels(self, codes: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """codes (q', g, N, k), present (q', g, N, 1) -> (q', g, N, d), zero where absent (the
        bias would otherwise stand for a dropped level)."""
        return self.project_out_levels(codes) * present

    def loss(self, z_e, code, weight, options) -> torch.Tensor:
        """commitment_weight * mse(z_e, sg(code)), plus codebook_weight * mse(sg(z_e), code)
        for a learnable codebook; z_e, code (g, N, k) -> (g,)."""
        loss = weighted_mse(z_e, code.detach(), weight) * options.commitment_weight
        if options.learnable_codebook:
            loss = loss + weighted_mse(z_e.detach(), code, weight) * options.codebook_weight
        return loss
