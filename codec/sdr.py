"""Scale-invariant signal-to-distortion ratio (SI-SDR; Le Roux et al., ICASSP 2019): the metric
`codec eval` reports and, negated, a training loss (codec.losses.negative_si_sdr)."""

from __future__ import annotations

import torch


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
