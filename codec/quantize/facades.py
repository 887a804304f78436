"""vector-quantize-pytorch's interface (residual_vq.py, the seed) over the engine, so that
`from codec.quantize import ResidualVQ, GroupedResidualVQ` replaces its import.

    GroupedResidualVQ(dim, groups, ...)(x (b, n, dim)) -> (quantized (b, n, dim),
        indices (g, b, n, q), losses (g, q)), plus all_codes (g, q, b, n, d) when asked;
        with indices= (g, b, n, q) given -> (quantized, cross_entropy_loss)
    ResidualVQ(dim, num_quantizers, ...)(x) -> the same without the group axis

What is only the seed's lives here: its keyword arguments (codec/quantize/options.py), image
feature maps (b, dim, h, w), lists of indices, teacher forcing from indices, and the tuples.
The model uses the engine's typed interface (codec/quantize/residual.py).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from einops import rearrange

from codec.quantize.codebook import l2norm
from codec.quantize.options import ResidualOptions
from codec.quantize.residual import ResidualQuantizer
from codec.quantize.result import QuantizedResult


class SeedQuantizer(ResidualQuantizer):
    """The engine built from the seed's keyword arguments, with its input layouts."""

    def __init__(self, *, accept_image_fmap: bool = False, **kwargs):
        super().__init__(ResidualOptions.from_seed(**kwargs))
        self.accept_image_fmap = accept_image_fmap

    # -- layouts -------------------------------------------------------------------------------

    def _sequence(self, x: torch.Tensor):
        """(b, n, dim) as it is, or with accept_image_fmap (b, dim, h, w) -> (b, h * w, dim)
        and (h, w)."""
        if not self.accept_image_fmap:
            return x, None
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise ValueError("quantizer input must be a floating-point tensor")
        if x.ndim != 4 or x.shape[1] != self.dim:
            raise ValueError(
                f"expected input of shape (batch, {self.dim}, height, width), got {tuple(x.shape)}"
            )
        return rearrange(x, "b d h w -> b (h w) d"), tuple(x.shape[2:])

    def _sequence_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(g, b, n, q'), or with accept_image_fmap (g, b, h, w, q') -> (g, b, h * w, q')."""
        if not self.accept_image_fmap or not torch.is_tensor(indices):
            return indices
        if indices.ndim != 5 or indices.shape[0] != self.groups:
            raise ValueError(
                "expected indices of shape (groups, batch, height, width, levels) with "
                f"groups={self.groups}, got {tuple(indices.shape)}"
            )
        return rearrange(indices, "g b h w q -> g b (h w) q")

    def _codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(g, b, *spatial, q') -> (g, q, b, *spatial, d) in codebook space."""
        codes = self.codes_of(self._sequence_indices(indices))
        return codes.reshape(*codes.shape[:3], *indices.shape[2:-1], codes.shape[-1])

    def _output_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(g, b, *spatial, q') -> (b, n, dim), or (b, dim, h, w) for image feature maps."""
        out = self.decode(self._sequence_indices(indices))
        if not self.accept_image_fmap:
            return out
        return rearrange(out, "b (h w) d -> b d h w", h=indices.shape[2], w=indices.shape[3])

    # -- forward -------------------------------------------------------------------------------

    def _seed_forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None,
        indices: torch.Tensor | None,
        return_all_codes: bool,
        sample_codebook_temp: float | None,
        freeze_codebook: bool,
        fixed_seed: int | None,
        num_levels: int | None = None,
    ) -> QuantizedResult:
        """The result in the seed's layout; teacher forcing with `indices` given."""
        sequence, spatial = self._sequence(x)
        if indices is not None:
            out, ce = self._teacher_forced(sequence, self._sequence_indices(indices), mask)
            return QuantizedResult(quantized=self._image(out, spatial), cross_entropy=ce)
        result = self.quantize(
            sequence,
            mask=mask,
            num_levels=num_levels,
            temperature=sample_codebook_temp,
            freeze=freeze_codebook,
            fixed_seed=fixed_seed,
            all_codes=return_all_codes,
        )
        if spatial is None:
            return result
        h, w = spatial
        codes = result.all_codes
        return dataclasses.replace(
            result,
            quantized=self._image(result.quantized, spatial),
            indices=rearrange(result.indices, "g b (h w) q -> g b h w q", h=h, w=w),
            all_codes=None
            if codes is None
            else rearrange(codes, "g q b (h w) d -> g q b h w d", h=h, w=w),
        )

    @staticmethod
    def _image(out: torch.Tensor, spatial) -> torch.Tensor:
        if spatial is None:
            return out
        return rearrange(out, "b (h w) d -> b d h w", h=spatial[0], w=spatial[1])

    def _teacher_forced(self, x: torch.Tensor, indices: torch.Tensor, mask):
        """x (b, n, dim), indices (g, b, n, q) -> (quantized (b, n, dim), cross entropy): the
        codes `indices` under softmax(-distance) at each level, summed over levels and groups,
        each level on the residual the given codes leave."""
        self.check_input(x)
        b, n, _ = x.shape
        valid = self.valid_rows(mask, batch=b, positions=n)
        with torch.autocast(device_type=x.device.type, enabled=False):
            hg = self.to_groups(x, valid=valid)
            if not self.code_kind.teacher_forcing:
                raise ValueError(
                    "cross entropy from indices is not supported with factorized codes"
                )
            flat, _ = self.flat_indices(indices)
            if flat.shape[-1] != self.num_quantizers or bool((flat < 0).any()):
                raise ValueError(
                    "cross entropy needs indices for every level and no dropped (-1) entries"
                )
            g, n_rows, d = hg.shape
            if flat.shape[1] != n_rows:
                raise ValueError(f"indices cover {flat.shape[1]} positions, the input {n_rows}")
            bank = self.bank
            residual, quantized = hg, torch.zeros_like(hg.detach())
            total = hg.new_zeros(())
            for level in range(self.num_quantizers):
                slots = self.slots(level)
                embed = bank.embed[slots]
                if bank.cosine:
                    logits = torch.bmm(l2norm(residual), l2norm(embed).transpose(1, 2))
                else:
                    logits = (
                        2 * torch.bmm(residual, embed.transpose(1, 2))
                        - embed.pow(2).sum(-1)[:, None]
                    )
                target = flat[..., level]
                ce = F.cross_entropy(
                    rearrange(logits, "g n c -> (g n) c"), target.reshape(-1), reduction="none"
                ).view(g, n_rows)
                if valid is not None:
                    ce = (ce * valid).sum(-1) / valid.sum().clamp(min=1)
                else:
                    ce = ce.mean(-1)
                total = total + ce.sum()
                code = bank.lookup(target, slots).detach()
                quantized = quantized + code
                residual = residual - code
            out = hg + (quantized - hg).detach() if hg.requires_grad else quantized
            return self.from_groups(out, batch=b, dtype=x.dtype), total


class GroupedResidualVQ(SeedQuantizer):
    """Grouped residual VQ: the feature dim is split into `groups`, each quantized by its own
    residual stack; all groups cut at the same dropout depth.

    forward(x (b, n, dim)) -> (quantized (b, n, dim), indices (g, b, n, q), losses (g, q)),
    plus all_codes (g, q, b, n, d) with `return_all_codes`; with `indices=` (g, b, n, q) it
    returns (quantized, cross_entropy_loss).
    """

    def __init__(self, *, dim: int, groups: int = 1, accept_image_fmap: bool = False, **kwargs):
        super().__init__(dim=dim, groups=groups, accept_image_fmap=accept_image_fmap, **kwargs)

    @property
    def codebooks(self) -> torch.Tensor:
        """(g, q, c, d); with a shared codebook every level shows the same codes."""
        return self.level_codebooks()

    @property
    def split_dim(self) -> int:
        return 1 if self.accept_image_fmap else -1

    def get_codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self._codes_from_indices(_stack_groups(indices))

    def get_output_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self._output_from_indices(_stack_groups(indices))

    def forward(
        self,
        x: torch.Tensor,
        indices: torch.Tensor | None = None,
        return_all_codes: bool = False,
        sample_codebook_temp: float | None = None,
        freeze_codebook: bool = False,
        mask: torch.Tensor | None = None,
        rand_quantize_dropout_fixed_seed: int | None = None,
        num_levels: int | None = None,
    ):
        """`num_levels` (beyond the seed) runs only the first levels; the rest get index -1."""
        indices = None if indices is None or len(indices) == 0 else _stack_groups(indices)
        result = self._seed_forward(
            x,
            mask=mask,
            indices=indices,
            return_all_codes=return_all_codes,
            sample_codebook_temp=sample_codebook_temp,
            freeze_codebook=freeze_codebook,
            fixed_seed=rand_quantize_dropout_fixed_seed,
            num_levels=num_levels,
        )
        return seed_tuple(result)


class ResidualVQ(SeedQuantizer):
    """Residual VQ (SoundStream, Algorithm 1).

    forward(x (b, n, dim)) -> (quantized (b, n, dim), indices (b, n, q), losses (q,)), plus
    all_codes (q, b, n, d) with `return_all_codes`; with `indices=` (b, n, q) it returns
    (quantized, cross_entropy_loss).
    """

    def __init__(self, *, dim: int, num_quantizers: int, accept_image_fmap: bool = False, **kw):
        super().__init__(
            dim=dim, num_quantizers=num_quantizers, accept_image_fmap=accept_image_fmap, **kw
        )

    @property
    def codebooks(self) -> torch.Tensor:
        """(q, c, d)."""
        return self.level_codebooks()[0]

    def get_codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self._codes_from_indices(_as_tensor(indices).unsqueeze(0))[0]

    def get_output_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return self._output_from_indices(_as_tensor(indices).unsqueeze(0))

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        indices: torch.Tensor | list | None = None,
        return_all_codes: bool = False,
        sample_codebook_temp: float | None = None,
        freeze_codebook: bool = False,
        rand_quantize_dropout_fixed_seed: int | None = None,
    ):
        if indices is not None:
            indices = _as_tensor(indices).unsqueeze(0)
        result = self._seed_forward(
            x,
            mask=mask,
            indices=indices,
            return_all_codes=return_all_codes,
            sample_codebook_temp=sample_codebook_temp,
            freeze_codebook=freeze_codebook,
            fixed_seed=rand_quantize_dropout_fixed_seed,
        )
        return seed_tuple(single_group(result))

    def telemetry(self) -> dict[str, torch.Tensor]:
        """As GroupedResidualVQ.telemetry, each of shape (levels,)."""
        return {k: v[0] for k, v in super().telemetry().items()}


def single_group(result: QuantizedResult) -> QuantizedResult:
    """The result of a one-group quantizer without its group axis: indices (b, n, q), losses
    (q,), all_codes (q, b, n, d)."""

    def first(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[0]

    return dataclasses.replace(
        result,
        indices=first(result.indices),
        losses=first(result.losses),
        all_codes=first(result.all_codes),
    )


def seed_tuple(result: QuantizedResult) -> tuple[torch.Tensor, ...]:
    """vector-quantize-pytorch's return value: (quantized, cross_entropy) for teacher forcing,
    else (quantized, indices, losses), plus all_codes when it was asked for."""
    if result.cross_entropy is not None:
        return result.quantized, result.cross_entropy
    outputs = (result.quantized, result.indices, result.losses)
    return outputs if result.all_codes is None else (*outputs, result.all_codes)


def _as_tensor(indices) -> torch.Tensor:
    if isinstance(indices, (list, tuple)):
        return torch.stack(list(indices), dim=-1)
    return indices


def _stack_groups(indices) -> torch.Tensor:
    if isinstance(indices, (list, tuple)):
        return torch.stack(list(indices))
    return indices
