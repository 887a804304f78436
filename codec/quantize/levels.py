"""What a residual quantizer's level does with its code, by kind of code.

Every level runs the same loop (codec/quantize/residual.py): take the level's input from the
residual, search the nearest code there, add what the code stands for to the output, take that
from the residual. A kind of code says the steps that differ:

    level_input(l, r)        the vector the level searches (g, N, k)
    level_output(l, x, c)    what the level adds to the output (g, N, d), carrying the level's
                             gradient where the kind has one
    code_output(l, c)        what a code stands for in the residual's space (k-means start)
    decode_levels(codes, p)  codes (q', g, N, k) of present (p) levels -> (q', g, N, d)
    loss(x, code, w, opts)   the level's loss (g,)

and, as attributes, whether the whole stack takes one straight-through estimator, whether the
search compares L2-normalised vectors, and whether teacher forcing from given codes (the
seed's cross entropy) is defined for it. `PlainCodes` is the residual VQ of SoundStream and EnCodec;
`FactorizedCodes` (codec/quantize/factorized.py) is DAC's.
"""

from __future__ import annotations

import torch


def weighted_mse(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean squared difference of a and b (g, N, d) over rows weighted by `weight` (N,) -> (g,)."""
    err = (a - b).pow(2)
    if weight is None:
        return err.mean(dim=(1, 2))
    denom = weight.sum().clamp(min=1) * a.shape[-1]
    return (err * weight[None, :, None]).sum(dim=(1, 2)) / denom


class PlainCodes:
    """Codes in the residual's own space: a level searches the residual and adds its code (no
    gradient); the stack's output gets one straight-through estimator (or the rotation trick)
    to the input, and each level a commitment loss to its detached code (to the code itself
    as well, for a learnable codebook)."""

    straight_through = True
    normalized_search = False
    teacher_forcing = True

    def level_input(self, level: int, residual: torch.Tensor) -> torch.Tensor:
        return residual

    def level_output(self, level: int, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return code.detach()

    def code_output(self, level: int, code: torch.Tensor) -> torch.Tensor:
        return code

    def decode_levels(self, codes: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        return codes  # absent levels' codes are zeros already

    def loss(self, x, code, weight, options) -> torch.Tensor:
        """commitment_weight * mse(x, sg(code)), or mse(x, code) for a learnable codebook."""
        target = code if options.learnable_codebook else code.detach()
        return weighted_mse(x, target, weight) * options.commitment_weight
