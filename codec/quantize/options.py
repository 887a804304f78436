"""What a residual quantizer is built from, in one dataclass.

`ResidualOptions` names every setting of `codec.quantize.residual.ResidualQuantizer` with its
default and checks them together; `from_seed` reads the keyword arguments of
vector-quantize-pytorch's ResidualVQ (the seed), refusing the ones whose behaviour is not
implemented here.
"""

from __future__ import annotations

import dataclasses

# seed options accepted only at the value that means "off"
SEED_OPTIONS_IGNORED = {"straight_through": False, "heads": 1, "channel_last": True}


@dataclasses.dataclass
class ResidualOptions:
    """Shape: `dim` split into `groups`, each quantized by `num_quantizers` levels of
    `codebook_size` codes of `codebook_dim` (None: dim / groups; otherwise a learned projection
    per group, or with `factorized` a projection per level, DAC's codes). `shared_codebook`:
    every level of a group reads the same codebook.

    Dropout (codec/quantize/dropout.py): in training keep a structured depth in
    [cutoff_index, q), rounded up to `multiple_of`; per item with probability `prob` when
    `per_item` (DAC), else one depth per step, taken with probability `prob`.

    Losses: each level's `commitment_weight` * mse(residual, sg(code)); with `factorized` and a
    learnable codebook also `codebook_weight` * mse(sg(z_e), code). `rotation_trick` carries the
    gradient through a rotation instead of the identity.

    Codebooks (codec/quantize/codebook.py): EMA with `decay` and `eps`, or learned
    (`learnable_codebook`, no EMA); k-means start (`kmeans_init`, `kmeans_iters`, over all ranks
    with `sync_kmeans`); dead codes below `threshold_ema_dead_code` replaced; cosine search
    (`use_cosine_sim`); statistics summed over DDP ranks unless `sync_codebook` is False;
    `freeze_codebook` turns updates off; `check_finite` raises on NaN or Inf in training;
    sampled codes (`stochastic_sample_codes` at `sample_codebook_temp`); the search in
    `search_precision` with `search_candidates` re-ranked, `max_search_elements` scores at a
    time."""

    dim: int
    num_quantizers: int
    codebook_size: int
    groups: int = 1
    codebook_dim: int | None = None
    shared_codebook: bool = False
    factorized: bool = False
    quantize_dropout: bool = False
    quantize_dropout_cutoff_index: int = 0
    quantize_dropout_multiple_of: int = 1
    quantize_dropout_per_item: bool = False
    quantize_dropout_prob: float = 1.0
    commitment_weight: float = 1.0
    codebook_weight: float = 1.0
    rotation_trick: bool = False
    decay: float = 0.8
    eps: float = 1e-5
    kmeans_init: bool = False
    kmeans_iters: int = 10
    use_cosine_sim: bool = False
    threshold_ema_dead_code: float = 0.0
    ema_update: bool = True
    learnable_codebook: bool = False
    freeze_codebook: bool = False
    stochastic_sample_codes: bool = False
    sample_codebook_temp: float = 1.0
    sync_codebook: bool | None = None
    sync_kmeans: bool = True
    check_finite: bool = True
    search_precision: str = "float32"
    search_candidates: int = 3
    max_search_elements: int = 1 << 20

    def __post_init__(self) -> None:
        q = self.num_quantizers
        if self.dim % self.groups:
            raise ValueError(f"dim {self.dim} is not divisible by groups {self.groups}")
        if q < 1:
            raise ValueError(f"num_quantizers must be >= 1, got {q}")
        if not 0 <= self.quantize_dropout_cutoff_index < q:
            raise ValueError(
                f"quantize_dropout_cutoff_index must be in [0, {q}), "
                f"got {self.quantize_dropout_cutoff_index}"
            )
        if self.quantize_dropout_multiple_of < 1:
            raise ValueError("quantize_dropout_multiple_of must be >= 1")
        if self.factorized:
            if self.codebook_dim is None:
                raise ValueError("factorized needs codebook_dim (DAC: 8)")
            if self.use_cosine_sim or self.rotation_trick:
                raise ValueError("factorized excludes use_cosine_sim and rotation_trick")

    @classmethod
    def from_seed(cls, **kwargs) -> ResidualOptions:
        """The seed's keyword arguments -> options; TypeError for one not supported."""
        for key, neutral in SEED_OPTIONS_IGNORED.items():
            if key in kwargs and kwargs.pop(key) != neutral:
                raise TypeError(f"{key}={neutral!r} is the only value supported")
        unsupported = set(kwargs) - {f.name for f in dataclasses.fields(cls)}
        if unsupported:
            raise TypeError(f"unsupported quantizer options: {', '.join(sorted(unsupported))}")
        return cls(**kwargs)

    @property
    def dim_per_group(self) -> int:
        return self.dim // self.groups

    @property
    def code_dim(self) -> int:
        """The size of a code: codebook_dim, or dim / groups."""
        return self.codebook_dim or self.dim_per_group

    @property
    def dropout(self) -> bool:
        """Whether training drops levels (there is more than one to drop)."""
        return self.quantize_dropout and self.num_quantizers > 1
