"""Evaluation metrics: SI-SDR, mel distance, and code statistics."""

from __future__ import annotations

import math

import torch

from codec.losses import MelLoss


def si_sdr(estimate: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB per item: (b, c, t) -> (b,), channels flattened together."""
    est = estimate.reshape(estimate.shape[0], -1).double()
    ref = target.reshape(target.shape[0], -1).double()
    est, ref = est - est.mean(-1, keepdim=True), ref - ref.mean(-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    projection = scale * ref
    noise = est - projection
    ratio = projection.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps)
    return (10 * torch.log10(ratio + eps)).float()


class MelDistance(MelLoss):
    """The multi-scale mel distance (MelLoss) as a metric: lower is better."""

    @torch.no_grad()
    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(estimate, target)


def code_statistics(codes: torch.Tensor, codebook_size: int) -> dict[str, list[float]]:
    """codes (b, g, levels, f) -> per level, averaged over groups: `usage` (fraction of codes
    used) and `entropy_bits` (the bits per code an entropy coder could reach)."""
    usage, entropy = [], []
    for level in range(codes.shape[2]):
        u, h = [], []
        for group in range(codes.shape[1]):
            flat = codes[:, group, level].reshape(-1)
            flat = flat[flat >= 0]
            counts = torch.bincount(flat, minlength=codebook_size).double()
            p = counts / counts.sum().clamp(min=1)
            u.append(float((counts > 0).double().mean()))
            h.append(float(-(p[p > 0] * p[p > 0].log2()).sum()))
        usage.append(sum(u) / len(u))
        entropy.append(sum(h) / len(h))
    return {"usage": usage, "entropy_bits": entropy, "max_bits": math.log2(codebook_size)}
