"""What one quantizer forward produces: the engine's typed result (the facades in
codec/quantize/facades.py turn it into the seed's tuples)."""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class QuantizedResult:
    """The outputs of one forward, by name.

    Quantizing fills quantized, indices and losses, and all_codes when it was asked for;
    teacher forcing (`indices=` given) fills quantized and cross_entropy only.

    Shapes, as the facades see them: quantized (b, n, dim), or (b, dim, h, w) for image feature
    maps; indices (g, b, n, q), or (g, b, h, w, q), with -1 for a level or position not run;
    losses (g, q), 0 for a level not run; all_codes (g, q, b, n, d), in codebook space;
    cross_entropy (), summed over levels and groups. Inside the engine the same fields hold the
    flat layout, quantized (g, N, d) and indices (g, N, q) with N = b * n, until `quantize`
    reshapes them.
    """

    quantized: torch.Tensor
    indices: torch.Tensor | None = None
    losses: torch.Tensor | None = None
    all_codes: torch.Tensor | None = None
    cross_entropy: torch.Tensor | None = None
