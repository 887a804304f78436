"""Codes to quantized latents in one embedding-bag sum, for decoding a few frames at a time.

    table = CodeTable.of(quantizer)       # None for factorized codes or image feature maps
    latents = table(codes)                # codes (b, g, levels, f) -> (b, f, dim)

`get_output_from_indices` checks, gathers and sums through the quantizer's general path, which
for one frame costs more than the gather itself. Here every group's and level's codes are one
(g * q * c, d) table: bag (b, f, g) sums the rows of its levels' codes, and the groups' sums
side by side are the latents (after the quantizer's project_out, as there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from codec.quantize.residual import ResidualVQ, _GroupedResidual


class CodeTable:
    def __init__(self, quantizer: _GroupedResidual):
        codebooks = quantizer.codebooks.detach().float()
        if isinstance(quantizer, ResidualVQ):
            codebooks = codebooks.unsqueeze(0)
        g, q, c, d = codebooks.shape
        self.table = codebooks.reshape(g * q * c, d).contiguous()
        # offset of (group, level) in the table, (g, q)
        self.offsets = (torch.arange(g)[:, None] * q + torch.arange(q)) * c
        self.codebook_size, self.levels = c, q
        self.project_out = quantizer.project_out

    @classmethod
    def of(cls, quantizer) -> CodeTable | None:
        if not isinstance(quantizer, _GroupedResidual) or quantizer.accept_image_fmap:
            return None
        return None if quantizer.factorized else cls(quantizer)

    def __call__(self, codes: torch.Tensor) -> torch.Tensor | None:
        """codes (b, g, levels, f), every code in [0, c) -> latents (b, f, dim); None when a
        code is out of that range (-1, a dropped level, included), for the caller's checked
        path to handle or report."""
        b, g, levels, f = codes.shape
        low, high = torch.aminmax(codes)
        if int(low) < 0 or int(high) >= self.codebook_size or levels > self.levels:
            return None
        rows = rearrange(codes, "b g l f -> b f g l") + self.offsets[:, :levels]
        sums = F.embedding_bag(rows.reshape(-1, levels), self.table, mode="sum")
        return self.project_out(sums.view(b, f, -1))
