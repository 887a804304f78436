"""A residual quantizer's eval-mode encode and decode as plain tensor arithmetic, for export:
a fixed number of levels, no checks and no Python that depends on the data, so that
torch.export traces each into one graph (codec.runtime puts them inside the encoder and
decoder graphs).

    search = NearestCodes(quantizer, levels)   # latents (b, f, dim) -> codes (b, g, levels, f)
    lookup = CodeSum(quantizer)                # codes (b, g, L, f), L <= levels, -1 for a
                                               # dropped level -> latents (b, f, dim)

They give the codes of the quantizer's eval forward and the latents of
`get_output_from_indices` to float rounding: the nearest code of a near-tie (two distances
equal to float rounding) may differ. The weights are copied when they are made.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codec.quantize.codebook import l2norm
from codec.quantize.residual import ResidualQuantizer


def _level_codebooks(quantizer: ResidualQuantizer) -> torch.Tensor:
    """(levels, g, c, d): the codebook each level of each group searches."""
    return quantizer.level_codebooks().detach().float().transpose(0, 1)


def _factorized_weights(quantizer: ResidualQuantizer):
    """The factorized projections' weights with weight norm applied: in (q, g, k, d), in bias
    (q, g, k), out (q, g, d, k), out bias (q, g, d)."""
    with torch.no_grad():
        return tuple(t.detach().float() for t in quantizer.code_kind.weights())


class NearestCodes(nn.Module):
    """latents (b, f, dim) -> codes (b, g, levels, f), int64: each level's nearest code to the
    residual of the levels before (factorized: in its projection, by normalised distance)."""

    def __init__(self, quantizer: ResidualQuantizer, levels: int):
        super().__init__()
        if not 1 <= levels <= quantizer.num_quantizers:
            raise ValueError(f"levels must be in [1, {quantizer.num_quantizers}], got {levels}")
        self.levels, self.groups = levels, quantizer.groups
        self.factorized = quantizer.factorized
        self.cosine = quantizer.bank.cosine
        codebooks = _level_codebooks(quantizer)[:levels]
        searched = l2norm(codebooks) if self.factorized else codebooks
        # the score of code e for x is x.e - |e|^2 / 2 (L2), or x.e (cosine)
        half_norms = 0.5 * searched.square().sum(-1)
        if self.cosine:
            half_norms = torch.zeros_like(half_norms)
        # what a level subtracts (raw codes), each level's (g * c, d) rows
        self.register_buffer("codebooks", codebooks.flatten(1, 2).contiguous())
        self.register_buffer("offsets", torch.arange(self.groups)[:, None] * codebooks.shape[2])
        self.register_buffer("searched", searched.transpose(-1, -2).contiguous())  # (q g d c)
        self.register_buffer("half_norms", half_norms[:, :, None])  # (q, g, 1, c)
        if self.factorized:
            w_in, b_in, w_out, b_out = (t[:levels] for t in _factorized_weights(quantizer))
            self.register_buffer("w_in", w_in.transpose(-1, -2).contiguous())  # (q, g, d, k)
            self.register_buffer("b_in", b_in[:, :, None])
            self.register_buffer("w_out", w_out.transpose(-1, -2).contiguous())  # (q, g, k, d)
            self.register_buffer("b_out", b_out[:, :, None])
        self.project_in = quantizer.project_in

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        b, f, _ = latents.shape
        g = self.groups
        x = self.project_in(latents.float())  # (b, f, g * d)
        # a copy, not x.reshape: a reshape asks whether x's layout allows a view, which
        # torch.export answers by fixing sizes
        x = x.clone(memory_format=torch.contiguous_format)
        residual = x.reshape(b * f, g, -1).transpose(0, 1)  # (g, b f, d)
        codes = []
        for level in range(self.levels):
            if self.factorized:
                query = l2norm(torch.baddbmm(self.b_in[level], residual, self.w_in[level]))
            else:
                query = l2norm(residual) if self.cosine else residual
            scores = torch.baddbmm(-self.half_norms[level], query, self.searched[level])
            index = scores.argmax(-1)  # (g, b f)
            code = F.embedding(index + self.offsets, self.codebooks[level])  # (g, b f, d)
            if self.factorized:
                code = torch.baddbmm(self.b_out[level], code, self.w_out[level])
            residual = residual - code
            codes.append(index)
        return torch.stack(codes).reshape(self.levels, g, b, f).permute(2, 1, 0, 3)


class CodeSum(nn.Module):
    """codes (b, g, L, f) of the first L levels, -1 for a dropped one -> latents (b, f, dim):
    the sum of every level's code (factorized: projected out) per group, then the quantizer's
    output projection. One gather from a table of every level's and group's codes."""

    def __init__(self, quantizer: ResidualQuantizer):
        super().__init__()
        table = _level_codebooks(quantizer)  # (q, g, c, d)
        if quantizer.factorized:  # a code's contribution: out_proj(code)
            _, _, w_out, b_out = _factorized_weights(quantizer)
            table = torch.einsum("qgck,qgdk->qgcd", table, w_out) + b_out[:, :, None]
        q, g, c, d = table.shape
        self.groups, self.codebook_size = g, c
        self.register_buffer("table", table.reshape(q * g * c, d).contiguous())
        offsets = (torch.arange(q)[None, :] * g + torch.arange(g)[:, None]) * c  # (g, q)
        self.register_buffer("offsets", offsets)
        self.project_out = quantizer.project_out

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        b, g, levels, f = codes.shape
        rows = codes.permute(0, 3, 1, 2) + self.offsets[:, :levels]  # (b, f, g, L)
        present = (codes >= 0).permute(0, 3, 1, 2).unsqueeze(-1).to(self.table.dtype)
        vectors = F.embedding(rows.clamp(min=0), self.table) * present  # (b, f, g, L, d)
        return self.project_out(vectors.sum(3).reshape(b, f, -1))
