"""What one quantizer forward produces, before the facades turn it into the seed's tuples."""

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
    flat layout, quantized (g, N, d) and indices (g, N, q) with N = b * n, until `_forward`
    reshapes them.
    """

    quantized: torch.Tensor
    indices: torch.Tensor | None = None
    losses: torch.Tensor | None = None
    all_codes: torch.Tensor | None = None
    cross_entropy: torch.Tensor | None = None

    def single_group(self) -> QuantizedResult:
        """The result of a one-group quantizer without its group axis: indices (b, n, q),
        losses (q,), all_codes (q, b, n, d)."""

        def first(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[0]

        return dataclasses.replace(
            self,
            indices=first(self.indices),
            losses=first(self.losses),
            all_codes=first(self.all_codes),
        )

    def as_seed_tuple(self) -> tuple[torch.Tensor, ...]:
        """vector-quantize-pytorch's return value: (quantized, cross_entropy) for teacher
        forcing, else (quantized, indices, losses), plus all_codes when it was asked for."""
        if self.cross_entropy is not None:
            return self.quantized, self.cross_entropy
        outputs = (self.quantized, self.indices, self.losses)
        return outputs if self.all_codes is None else (*outputs, self.all_codes)
