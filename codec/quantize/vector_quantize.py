"""Single-level vector quantization: the seed's `VectorQuantize`, a one-level `ResidualVQ`."""

from __future__ import annotations

import torch

from codec.quantize.facades import ResidualVQ


class VectorQuantize(ResidualVQ):
    """forward(x (b, n, dim)) -> (quantized (b, n, dim), indices (b, n), loss (1,)); with
    `indices=` (b, n) it returns (quantized, cross_entropy_loss). Options as ResidualVQ's."""

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        codebook_dim: int | None = None,
        heads: int = 1,
        accept_image_fmap: bool = False,
        **kwargs,
    ):
        if heads != 1:
            raise TypeError("heads=1 is the only value supported")
        super().__init__(
            dim=dim,
            num_quantizers=1,
            codebook_size=codebook_size,
            codebook_dim=codebook_dim,
            accept_image_fmap=accept_image_fmap,
            **kwargs,
        )

    @property
    def codebook(self) -> torch.Tensor:
        """(c, d)."""
        return self.bank.embed[0]

    def get_codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return super().get_codes_from_indices(indices.unsqueeze(-1))[0]

    def get_output_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return super().get_output_from_indices(indices.unsqueeze(-1))

    def forward(
        self,
        x: torch.Tensor,
        indices: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        sample_codebook_temp: float | None = None,
        freeze_codebook: bool = False,
    ):
        if indices is not None:
            return super().forward(
                x, mask=mask, indices=indices.unsqueeze(-1), freeze_codebook=freeze_codebook
            )
        out, codes, losses = super().forward(
            x, mask=mask, sample_codebook_temp=sample_codebook_temp, freeze_codebook=freeze_codebook
        )
        return out, codes[..., 0], losses
