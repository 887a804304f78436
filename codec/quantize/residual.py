"""Grouped residual vector quantization with structured quantizer dropout.

The interface follows lucidrains' vector-quantize-pytorch `residual_vq.py`, so
`from codec.quantize import ResidualVQ, GroupedResidualVQ` replaces its import. Inside, all
groups and levels live in one `Codebook` bank (slot = level * groups + group): each level is one
batched search over every group, and one EMA step (one all-reduce under DDP) updates every level
after the forward.

Gradients: level l quantizes r_l = x - sum_{j<l} e_j, where the e_j are detached, so every
level gets its own commitment gradient to the input (EnCodec's later levels got none). The output
is x + (sum_l e_l - x).detach(): one straight-through estimator for the whole stack, so the
gradient to the encoder is the identity whatever the depth (the seed's sum of per-level
estimators scales it by the number of levels). `rotation_trick=True` uses the rotation trick
(Fifty et al., 2024) on the whole stack instead.

`factorized=True` (DAC; codec/quantize/factorized.py): each level projects the residual to
`codebook_dim` (with bias), searches L2-normalised codes there, and projects the raw code back;
the residual is updated in the full dimension. The output is then DAC's: the sum over levels of
out_proj(z_e + (code - z_e).detach()), whose gradient reaches the encoder through each level's
projections and trains out_proj from the reconstruction. Each level's loss is
commitment_weight * mse(z_e, sg(code)), plus codebook_weight * mse(sg(z_e), code) for a
learnable codebook (DAC: 0.25 and 1); an EMA codebook averages the projected z_e instead.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from codec.quantize import distributed as ddp
from codec.quantize.codebook import Codebook, assignment_sums, kmeans, l2norm
from codec.quantize.dropout import draw_depth, draw_item_depths
from codec.quantize.errors import NonFiniteInputError
from codec.quantize.factorized import FactorizedProjections
from codec.quantize.result import QuantizedResult

_SEED_OPTIONS_IGNORED = {"straight_through": False, "heads": 1, "channel_last": True}


class GroupedLinear(nn.Module):
    """Independent linear maps per group: (..., g * d_in) -> (..., g * d_out)."""

    def __init__(self, groups: int, dim_in: int, dim_out: int):
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(groups, dim_in, dim_out))
        self.bias = nn.Parameter(torch.zeros(groups, dim_out))
        nn.init.normal_(self.weight, std=dim_in**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = rearrange(x, "... (g d) -> ... g d", g=self.groups)
        x = torch.einsum("...gd,gde->...ge", x, self.weight) + self.bias
        return rearrange(x, "... g e -> ... (g e)")


def rotate_to(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Rotation trick: a value equal to q whose gradient reaches x through the (detached)
    rotation and scaling that carry x onto q. x, q: (..., d)."""
    x_norm = x.detach().norm(dim=-1, keepdim=True).clamp(min=1e-12)
    q_norm = q.norm(dim=-1, keepdim=True)
    u, v = x.detach() / x_norm, l2norm(q)
    w = l2norm(u + v)
    rotated = x - 2 * w * (w * x).sum(-1, keepdim=True) + 2 * v * (u * x).sum(-1, keepdim=True)
    return (q_norm / x_norm) * rotated


@dataclasses.dataclass
class _UpdateStatistics:
    """What one training step's EMA update needs. counts (levels, g, c), sums (levels, g, c, d),
    candidates (levels, g, c, d) (dead-code replacements; None without revival) and bad (1,)
    (> 0 when non-finite input was seen) are views into one fp32 buffer, `flat`, so that DDP
    sums them with one all-reduce. offsets and totals (levels,): rows held by the ranks before
    this one, and by all ranks."""

    flat: torch.Tensor
    counts: torch.Tensor
    sums: torch.Tensor
    candidates: torch.Tensor | None
    bad: torch.Tensor
    offsets: torch.Tensor
    totals: torch.Tensor

    @classmethod
    def zeros(
        cls, *, levels, groups, codebook_size, dim, with_candidates, like, offsets, totals
    ) -> _UpdateStatistics:
        c, d = codebook_size, dim
        shapes = {"counts": (levels, groups, c), "sums": (levels, groups, c, d), "bad": (1,)}
        if with_candidates:
            shapes["candidates"] = (levels, groups, c, d)
        sizes = [math.prod(shape) for shape in shapes.values()]
        flat = like.new_zeros(sum(sizes), dtype=torch.float32)
        views = {
            name: part.view(shape) for (name, shape), part in zip(shapes.items(), flat.split(sizes))
        }
        views.setdefault("candidates", None)
        return cls(flat=flat, offsets=offsets, totals=totals, **views)


class _GroupedResidual(nn.Module):
    """The engine shared by GroupedResidualVQ, ResidualVQ and VectorQuantize.

    Internally everything is (g, N, d) with N = batch * positions; the facades reshape.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_quantizers: int,
        codebook_size: int,
        groups: int = 1,
        codebook_dim: int | None = None,
        shared_codebook: bool = False,
        quantize_dropout: bool = False,
        quantize_dropout_cutoff_index: int = 0,
        quantize_dropout_multiple_of: int = 1,
        quantize_dropout_per_item: bool = False,
        quantize_dropout_prob: float = 1.0,
        accept_image_fmap: bool = False,
        commitment_weight: float = 1.0,
        rotation_trick: bool = False,
        decay: float = 0.8,
        eps: float = 1e-5,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        use_cosine_sim: bool = False,
        threshold_ema_dead_code: float = 0.0,
        ema_update: bool = True,
        learnable_codebook: bool = False,
        freeze_codebook: bool = False,
        stochastic_sample_codes: bool = False,
        sample_codebook_temp: float = 1.0,
        sync_codebook: bool | None = None,
        sync_kmeans: bool = True,
        check_finite: bool = True,
        search_precision: str = "float32",
        search_candidates: int = 3,
        max_search_elements: int = 1 << 20,
        factorized: bool = False,
        codebook_weight: float = 1.0,
        **unsupported,
    ):
        super().__init__()
        for key, neutral in _SEED_OPTIONS_IGNORED.items():
            if key in unsupported and unsupported.pop(key) != neutral:
                raise TypeError(f"{key}={neutral!r} is the only value supported")
        if unsupported:
            raise TypeError(f"unsupported quantizer options: {', '.join(sorted(unsupported))}")
        if dim % groups:
            raise ValueError(f"dim {dim} is not divisible by groups {groups}")
        if num_quantizers < 1:
            raise ValueError(f"num_quantizers must be >= 1, got {num_quantizers}")
        if not 0 <= quantize_dropout_cutoff_index < num_quantizers:
            raise ValueError(
                f"quantize_dropout_cutoff_index must be in [0, {num_quantizers}), "
                f"got {quantize_dropout_cutoff_index}"
            )
        if quantize_dropout_multiple_of < 1:
            raise ValueError("quantize_dropout_multiple_of must be >= 1")
        self.dim, self.groups, self.num_quantizers = dim, groups, num_quantizers
        dim_per_group = dim // groups
        self.codebook_dim = codebook_dim or dim_per_group
        self.factorized = factorized
        self._projections = None
        if factorized:
            if codebook_dim is None:
                raise ValueError("factorized needs codebook_dim (DAC: 8)")
            if use_cosine_sim or rotation_trick:
                raise ValueError("factorized excludes use_cosine_sim and rotation_trick")
            self._projections = FactorizedProjections(
                num_quantizers, groups, dim_per_group, codebook_dim
            )
            self.project_in = self.project_out = nn.Identity()
        elif self.codebook_dim != dim_per_group:
            self.project_in = GroupedLinear(groups, dim_per_group, self.codebook_dim)
            self.project_out = GroupedLinear(groups, self.codebook_dim, dim_per_group)
        else:
            self.project_in = self.project_out = nn.Identity()
        self.shared_codebook = shared_codebook
        self.quantize_dropout = quantize_dropout and num_quantizers > 1
        self.quantize_dropout_cutoff_index = quantize_dropout_cutoff_index
        self.quantize_dropout_multiple_of = quantize_dropout_multiple_of
        self.quantize_dropout_per_item = quantize_dropout_per_item
        self.quantize_dropout_prob = quantize_dropout_prob
        self.accept_image_fmap = accept_image_fmap
        self.commitment_weight = commitment_weight
        self.codebook_weight = codebook_weight
        self.rotation_trick = rotation_trick
        self.freeze_codebook = freeze_codebook
        self.stochastic_sample_codes = stochastic_sample_codes
        self.sample_codebook_temp = sample_codebook_temp
        self.sync_codebook = sync_codebook
        self.sync_kmeans = sync_kmeans
        self.check_finite = check_finite
        self.kmeans_iters = kmeans_iters
        slots = groups if shared_codebook else groups * num_quantizers
        self._codebook = Codebook(
            self.codebook_dim,
            codebook_size,
            slots,
            decay=decay,
            eps=eps,
            kmeans_init=kmeans_init,
            use_cosine_sim=use_cosine_sim,
            threshold_ema_dead_code=threshold_ema_dead_code,
            ema_update=ema_update,
            learnable_codebook=learnable_codebook,
            search_precision=search_precision,
            search_candidates=search_candidates,
            max_search_elements=max_search_elements,
            normalized_search=factorized,
        )
        # Counter-based RNG for dropout depths, k-means and dead-code sampling: a seed and a step,
        # identical on every rank, saved with the weights (see get_extra_state).
        self._rng_seed = int(torch.randint(0, 2**62, (1,), device="cpu"))
        self._rng_step = 0
        self._rng_synced = False
        nan = torch.full((groups, num_quantizers), float("nan"))
        self.register_buffer("_usage", nan.clone(), persistent=False)
        self.register_buffer("_perplexity", nan.clone(), persistent=False)
        self.register_buffer("_revived", torch.zeros(groups, num_quantizers), persistent=False)

    # -- state ---------------------------------------------------------------------------------

    @property
    def codebook_size(self) -> int:
        return self._codebook.codebook_size

    @property
    def threshold_ema_dead_code(self) -> float:
        """A code whose EMA cluster size falls below this is replaced (0: never)."""
        return self._codebook.threshold_ema_dead_code

    def get_extra_state(self) -> torch.Tensor:
        return torch.tensor([self._rng_seed, self._rng_step], dtype=torch.long)

    def set_extra_state(self, state) -> None:
        self._rng_seed, self._rng_step = (int(v) for v in state)

    def _slots(self, level: int) -> slice:
        if self.shared_codebook:
            return slice(0, self.groups)
        return slice(level * self.groups, (level + 1) * self.groups)

    def _generator(self) -> torch.Generator:
        seed = (self._rng_seed * 1_000_003 + self._rng_step) % (2**63 - 1)
        return torch.Generator().manual_seed(seed)

    def _sync_rng(self, device: torch.device) -> None:
        rank, size = ddp.world()
        if size > 1 and not self._rng_synced:
            self._rng_seed = ddp.broadcast_int(self._rng_seed, device)
            self._rng_step = ddp.broadcast_int(self._rng_step, device)
            self._rng_synced = True

    def _syncs(self) -> bool:
        return self.sync_codebook is not False

    # -- shapes --------------------------------------------------------------------------------

    def _flatten_input(self, x: torch.Tensor):
        """(b, n, dim) or, with accept_image_fmap, (b, dim, h, w) -> (b, n, dim) and spatial."""
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise ValueError("quantizer input must be a floating-point tensor")
        if self.accept_image_fmap:
            if x.ndim != 4 or x.shape[1] != self.dim:
                raise ValueError(
                    f"expected input of shape (batch, {self.dim}, height, width), "
                    f"got {tuple(x.shape)}"
                )
            return rearrange(x, "b d h w -> b (h w) d"), x.shape[2:]
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(
                f"expected input of shape (batch, seq, {self.dim}), got {tuple(x.shape)}"
            )
        return x, None

    def _unflatten_output(self, x: torch.Tensor, spatial):
        if spatial is None:
            return x
        return rearrange(x, "b (h w) d -> b d h w", h=spatial[0], w=spatial[1])

    def _flatten_indices(self, indices: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """(g, b, *spatial, q') -> (g, b * positions, q'), checked against shape and range."""
        g, c = self.groups, self.codebook_size
        if not torch.is_tensor(indices) or indices.dtype.is_floating_point:
            raise ValueError("indices must be an integer tensor")
        want = 5 if self.accept_image_fmap else 4
        if indices.ndim != want or indices.shape[0] != g:
            layout = (
                "(groups, batch, height, width, levels)"
                if want == 5
                else "(groups, batch, seq, levels)"
            )
            raise ValueError(
                f"expected indices of shape {layout} with groups={g}, got {tuple(indices.shape)}"
            )
        if not 1 <= indices.shape[-1] <= self.num_quantizers:
            raise ValueError(
                f"indices have {indices.shape[-1]} levels; expected 1 to {self.num_quantizers}"
            )
        if indices.numel() and (int(indices.min()) < -1 or int(indices.max()) >= c):
            raise ValueError(
                f"indices out of range: expected values in [0, {c}) or -1 for a dropped level, "
                f"got min {int(indices.min())}, max {int(indices.max())}"
            )
        batch_shape = indices.shape[1:-1]
        return indices.reshape(g, -1, indices.shape[-1]).long(), batch_shape

    # -- decoding from indices ----------------------------------------------------------------

    def _codes(self, flat: torch.Tensor) -> torch.Tensor:
        """indices (g, N, q') -> codes (q, g, N, d); missing levels and -1 give zeros."""
        g, n, levels = flat.shape
        codes = self._present_codes(flat)
        if levels == self.num_quantizers:
            return codes
        return F.pad(codes, (0, 0, 0, 0, 0, 0, 0, self.num_quantizers - levels))

    def _present_codes(self, flat: torch.Tensor) -> torch.Tensor:
        """indices (g, N, q') -> codes (q', g, N, d), every level in one lookup; -1 gives
        zeros."""
        g, _, levels = flat.shape
        idx = flat.clamp(min=0)
        if self.shared_codebook:  # every level reads the group's one codebook
            codes = self._codebook.lookup(rearrange(idx, "g n q -> g (q n)"), self._slots(0))
            codes = rearrange(codes, "g (q n) d -> q g n d", q=levels)
        else:  # levels 0..q'-1 hold consecutive slots, level-major
            rows = rearrange(idx, "g n q -> (q g) n")
            slots = slice(self._slots(0).start, self._slots(levels - 1).stop)
            codes = self._codebook.lookup(rows, slots)
            codes = rearrange(codes, "(q g) n d -> q g n d", g=g)
        return codes.masked_fill(rearrange(flat < 0, "g n q -> q g n 1"), 0.0)

    def _codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(g, b, *spatial, q') -> (g, q, b, *spatial, d) in codebook space."""
        flat, batch_shape = self._flatten_indices(indices)
        codes = self._codes(flat)
        codes = rearrange(codes, "q g n d -> g q n d")
        return codes.reshape(self.groups, self.num_quantizers, *batch_shape, self.codebook_dim)

    def _output_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(g, b, *spatial, q') -> (b, n, dim), or (b, dim, h, w) for image feature maps."""
        flat, batch_shape = self._flatten_indices(indices)
        codes = self._present_codes(flat)  # (q', g, N, d)
        if self._projections is not None:
            present = rearrange(flat >= 0, "g n q -> q g n 1")
            codes = self._projections.project_out_levels(codes) * present
        summed = codes.sum(0)  # (g, N, d)
        out = self.project_out(rearrange(summed, "g n d -> n (g d)"))
        out = out.reshape(*batch_shape, self.dim)
        if self.accept_image_fmap:
            out = rearrange(out, "b h w d -> b d h w")
        return out

    # -- forward -------------------------------------------------------------------------------

    def _forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        indices: torch.Tensor | None = None,
        return_all_codes: bool = False,
        sample_codebook_temp: float | None = None,
        freeze_codebook: bool = False,
        fixed_seed: int | None = None,
        num_levels: int | None = None,
    ) -> QuantizedResult:
        """x (b, n, dim), or (b, dim, h, w) -> the result in the facades' layout; teacher forcing
        with `indices` (g, b, *spatial, q) given."""
        x, spatial = self._flatten_input(x)
        b, n, _ = x.shape
        valid = self._valid_rows(mask, batch=b, positions=n)
        with torch.autocast(device_type=x.device.type, enabled=False):
            hg = self._engine_input(x, valid=valid)
            if indices is not None:
                out, ce = self._cross_entropy(hg, indices, valid)
                out = self._engine_output(out, batch=b, spatial=spatial, dtype=x.dtype)
                return QuantizedResult(quantized=out, cross_entropy=ce)
            result = self._quantize(
                hg,
                valid=valid,
                batch=b,
                temperature=sample_codebook_temp,
                freeze=freeze_codebook,
                fixed_seed=fixed_seed,
                num_levels=num_levels,
            )
            out = self._engine_output(result.quantized, batch=b, spatial=spatial, dtype=x.dtype)
        codes = result.indices.reshape(
            self.groups, b, *(spatial if spatial is not None else (n,)), -1
        )
        all_codes = self._codes_from_indices(codes) if return_all_codes else None
        return dataclasses.replace(result, quantized=out, indices=codes, all_codes=all_codes)

    def _valid_rows(self, mask: torch.Tensor | None, *, batch: int, positions: int):
        """mask (b, n) -> (b * n,) bool, the rows that are real input; None without a mask."""
        if mask is None:
            return None
        if mask.shape != (batch, positions):
            raise ValueError(
                f"expected mask of shape ({batch}, {positions}), got {tuple(mask.shape)}"
            )
        return mask.bool().reshape(-1)

    def _engine_input(self, x: torch.Tensor, *, valid: torch.Tensor | None) -> torch.Tensor:
        """x (b, n, dim) -> (g, N, d) in fp32 codebook space, padding rows zeroed."""
        h = self.project_in(x.float())
        hg = rearrange(h, "b n (g d) -> g (b n) d", g=self.groups)
        return hg if valid is None else hg.masked_fill(~valid[None, :, None], 0.0)

    def _engine_output(self, out: torch.Tensor, *, batch: int, spatial, dtype) -> torch.Tensor:
        """(g, N, d) -> (b, n, dim), or (b, dim, h, w), in the input's dtype."""
        out = self.project_out(rearrange(out, "g n d -> n (g d)")).reshape(batch, -1, self.dim)
        return self._unflatten_output(out.to(dtype), spatial)

    def _quantize(
        self,
        hg: torch.Tensor,
        *,
        valid: torch.Tensor | None,
        batch: int,
        temperature: float | None,
        freeze: bool,
        fixed_seed: int | None,
        num_levels: int | None,
    ) -> QuantizedResult:
        """hg (g, N, d) -> the result in the engine's layout: quantized (g, N, d), indices
        (g, N, q), losses (g, q). A training step with updates on ends with one EMA step of
        every level that ran."""
        update = self.training and not (freeze or self.freeze_codebook)
        generator = self._begin_training_step(hg, valid=valid, update=update)
        levels, item_depths = self._levels_to_run(
            batch=batch, fixed_seed=fixed_seed, generator=generator, num_levels=num_levels
        )
        weights = self._level_weights(
            valid=valid,
            item_depths=item_depths,
            levels=levels,
            rows_per_item=hg.shape[1] // batch,
            device=hg.device,
        )
        stats = self._new_statistics(hg, weights=weights) if update else None
        track_grad = hg.requires_grad and torch.is_grad_enabled()
        quantized, indices, losses = self._run_levels(
            hg,
            weights=weights,
            temperature=self._temperature(temperature),
            stats=stats,
            generator=generator,
            track_grad=track_grad,
        )
        if stats is not None:
            self._apply_update(stats, hg=hg)
        out = self._straight_through(hg, quantized, track_grad=track_grad)
        return QuantizedResult(quantized=out, indices=indices, losses=losses)

    def _begin_training_step(self, hg, *, valid, update: bool) -> torch.Generator | None:
        """In training: agree the RNG over ranks, take this step's generator, and run k-means
        first if updates are on and the codebooks are not initialised. None in eval."""
        if not self.training:
            return None
        self._sync_rng(hg.device)
        generator = self._generator()
        self._rng_step += 1
        if update and not bool(self._codebook.initted):
            self._kmeans_init(hg, valid, generator)
        return generator

    def _levels_to_run(self, *, batch: int, fixed_seed, generator, num_levels: int | None):
        """(levels to run, per-item depths (batch,) or None): dropout's draw, capped by
        `num_levels`."""
        q = self.num_quantizers
        levels, item_depths = self._dropout_depths(batch, fixed_seed, generator)
        if num_levels is not None:
            if not 1 <= num_levels <= q:
                raise ValueError(f"num_levels must be in [1, {q}], got {num_levels}")
            levels = min(levels, num_levels)
        return levels, item_depths

    def _dropout_depths(self, batch: int, fixed_seed: int | None, generator: torch.Generator):
        """Structured dropout's draw: (levels to run, per-item depths (batch,) or None)."""
        q = self.num_quantizers
        if not (self.training and self.quantize_dropout):
            return q, None
        cutoff, multiple = self.quantize_dropout_cutoff_index, self.quantize_dropout_multiple_of
        if self.quantize_dropout_per_item:
            rank, size = ddp.world()
            depths = draw_item_depths(
                batch, q, cutoff, multiple, self.quantize_dropout_prob, generator, rank, size
            )
            # Under DDP every rank must run the same levels (the statistics are all-reduced
            # level by level), and one rank's deepest item need not be another's.
            return (q if size > 1 else int(depths.max())), depths
        depth = draw_depth(q, cutoff, multiple, generator, fixed_seed)
        if fixed_seed is None and self.quantize_dropout_prob < 1.0:
            if float(torch.rand((), generator=generator)) >= self.quantize_dropout_prob:
                depth = q
        return depth, None

    def _temperature(self, temperature: float | None) -> float:
        """Sampling temperature of this call; 0 (nearest code) outside training."""
        if temperature is None and self.stochastic_sample_codes:
            temperature = self.sample_codebook_temp
        return float(temperature or 0.0) if self.training else 0.0

    @staticmethod
    def _level_weights(*, valid, item_depths, levels: int, rows_per_item: int, device):
        """Per level run, the (N,) float weight of the rows that enter statistics and losses:
        real input (mask) in items deep enough (per-item dropout); None where every row does."""
        row_depth = None
        if item_depths is not None:
            row_depth = item_depths.to(device).repeat_interleave(rows_per_item)
        weights = []
        for level in range(levels):
            active = valid
            if row_depth is not None:
                deep = row_depth > level
                active = deep if active is None else active & deep
            weights.append(None if active is None else active.float())
        return weights

    def _run_levels(
        self,
        hg: torch.Tensor,
        *,
        weights: list[torch.Tensor | None],
        temperature: float,
        stats: _UpdateStatistics | None,
        generator: torch.Generator | None,
        track_grad: bool,
    ):
        """Quantize hg (g, N, d) level by level, each level on the detached residual of the ones
        before -> (quantized (g, N, d) without gradient, indices (g, N, q), losses (g, q)).
        Levels past len(weights), and rows of weight 0, get index -1; their loss is 0, and in
        eval every loss is 0. Fills `stats` when given."""
        if self._projections is not None:
            return self._run_factorized_levels(
                hg,
                weights=weights,
                temperature=temperature,
                stats=stats,
                generator=generator,
                track_grad=track_grad,
            )
        g, n_rows, _ = hg.shape
        q, levels = self.num_quantizers, len(weights)
        residual = hg if track_grad else hg.detach().clone()
        quantized = torch.zeros_like(hg.detach())
        codes = torch.full((q, g, n_rows), -1, dtype=torch.long, device=hg.device)
        losses = [hg.new_zeros(g) for _ in range(q)]
        for level in range(levels):
            slots = self._slots(level)
            detached = residual.detach()
            idx = self._codebook.search(detached, slots, temperature)
            code = self._codebook.lookup(idx, slots)
            w = weights[level]
            if w is not None:
                code = code * w[None, :, None]
                codes[level] = torch.where(w > 0, idx, -1)
            else:
                codes[level] = idx
            if stats is not None:
                self._record_level_statistics(
                    stats, level=level, x=detached, indices=idx, weight=w, generator=generator
                )
            if self.training:
                losses[level] = self._commitment_loss(residual, code, weight=w)
            code = code.detach()
            quantized.add_(code)
            if level + 1 < levels:
                residual = residual - code if track_grad else residual.sub_(code)
        return quantized, rearrange(codes, "q g n -> g n q"), torch.stack(losses, dim=-1)

    def _run_factorized_levels(self, hg, *, weights, temperature, stats, generator, track_grad):
        """`_run_levels` with factorized codes: the code of level l is searched in its own
        projection z_e = in_proj_l(r_l) and the level adds out_proj_l(z_e + sg(code - z_e)),
        which carries the gradient (the output is not straight-through as a whole)."""
        g, n_rows, _ = hg.shape
        q, levels = self.num_quantizers, len(weights)
        residual = hg if track_grad else hg.detach()
        quantized = torch.zeros_like(hg)
        codes = torch.full((q, g, n_rows), -1, dtype=torch.long, device=hg.device)
        losses = [hg.new_zeros(g) for _ in range(q)]
        for level in range(levels):
            slots = self._slots(level)
            z_e = self._projections.project_in(level, residual)
            idx = self._codebook.search(z_e.detach(), slots, temperature)
            code = self._codebook.lookup(idx, slots)
            w = weights[level]
            codes[level] = idx if w is None else torch.where(w > 0, idx, -1)
            if stats is not None:
                self._record_level_statistics(
                    stats, level=level, x=z_e.detach(), indices=idx, weight=w, generator=generator
                )
            if self.training:
                losses[level] = self._factorized_loss(z_e, code, weight=w)
            out = self._projections.project_out(level, z_e + (code - z_e).detach())
            if w is not None:
                out = out * w[None, :, None]
            quantized = quantized + out
            if level + 1 < levels:
                residual = residual - out.detach()
        # not detached even when hg needs no gradient: the projections still learn from it
        return quantized, rearrange(codes, "q g n -> g n q"), torch.stack(losses, dim=-1)

    def _factorized_loss(self, z_e, code, *, weight) -> torch.Tensor:
        """commitment_weight * mse(z_e, sg(code)), plus codebook_weight * mse(sg(z_e), code)
        for a learnable codebook; z_e, code (g, N, k) -> (g,)."""
        loss = _weighted_mse(z_e, code.detach(), weight) * self.commitment_weight
        if self._codebook.learnable:
            loss = loss + _weighted_mse(z_e.detach(), code, weight) * self.codebook_weight
        return loss

    def _commitment_loss(self, residual, code, *, weight: torch.Tensor | None) -> torch.Tensor:
        """Weighted mean squared distance of residual (g, N, d) to its codes -> (g,), times
        commitment_weight; a learnable codebook gets the gradient too."""
        target = code if self._codebook.learnable else code.detach()
        err = (residual - target).pow(2)
        if weight is None:
            loss = err.mean(dim=(1, 2))
        else:
            denom = weight.sum().clamp(min=1) * residual.shape[-1]
            loss = (err * weight[None, :, None]).sum(dim=(1, 2)) / denom
        return loss * self.commitment_weight

    def _straight_through(self, hg, quantized, *, track_grad: bool) -> torch.Tensor:
        """The value of `quantized` (g, N, d) with a gradient to hg: the identity, or with
        rotation_trick the rotation carrying hg onto it."""
        if self._projections is not None:  # the levels' own straight-through estimators
            return quantized
        if self.rotation_trick and track_grad:
            return rotate_to(hg, quantized)
        if track_grad:
            return hg + (quantized - hg).detach()
        return quantized

    # -- codebook maintenance ------------------------------------------------------------------

    def _new_statistics(self, hg: torch.Tensor, *, weights) -> _UpdateStatistics:
        """Empty statistics for one step over len(weights) levels, with every rank's count of
        rows per level gathered (dead-code candidates are drawn from the global batch)."""
        g, n_rows, _ = hg.shape
        level_rows = torch.stack([hg.new_tensor(n_rows) if w is None else w.sum() for w in weights])
        rank, _ = ddp.world()
        counts_by_rank = ddp.all_gather_counts(level_rows) if self._syncs() else level_rows[None]
        offsets = counts_by_rank[:rank].sum(0) if self._syncs() else torch.zeros_like(level_rows)
        return _UpdateStatistics.zeros(
            levels=len(weights),
            groups=g,
            codebook_size=self.codebook_size,
            dim=self.codebook_dim,
            with_candidates=self._codebook.threshold_ema_dead_code > 0,
            like=hg,
            offsets=offsets,
            totals=counts_by_rank.sum(0),
        )

    def _record_level_statistics(self, stats, *, level: int, x, indices, weight, generator):
        """Counts, sums and dead-code candidates of one level's rows x (g, N, d) assigned to
        `indices` (g, N), weighted by `weight` (N,) (None: every row counts)."""
        row_weight = x.new_ones(x.shape[1]) if weight is None else weight
        counts, sums = assignment_sums(x, indices, row_weight, self.codebook_size)
        stats.counts[level] = counts
        stats.sums[level] = sums
        if stats.candidates is not None:
            stats.candidates[level] = self._dead_code_candidates(
                x, row_weight, stats.offsets[level], stats.totals[level], generator
            )

    def _dead_code_candidates(self, x, weight, offset, total, generator):
        """For every code of every group, one row drawn uniformly from the valid rows of the
        *global* batch (all ranks, in rank order); rows held by other ranks are zero here and
        arrive through the all-reduce. x (g, N, d), weight (N,) -> (g, c, d)."""
        g, n_rows, d = x.shape
        c = self.codebook_size
        u = torch.rand((g, c), generator=generator).to(x.device)
        pick = (u * total).floor().long().clamp(max=(total.long() - 1).clamp(min=0))
        local = pick - offset.long()
        local_count = weight.sum().long()
        own = (local >= 0) & (local < local_count)
        cumulative = torch.cumsum((weight > 0).long(), 0)
        rows = torch.searchsorted(cumulative, local.clamp(min=0) + 1).clamp(max=n_rows - 1)
        picked = torch.gather(x, 1, rows.unsqueeze(-1).expand(-1, -1, d))
        return torch.where(own.unsqueeze(-1), picked, 0.0)

    def _apply_update(self, stats: _UpdateStatistics, *, hg: torch.Tensor) -> None:
        """Sum the statistics over ranks and take one EMA step (with dead-code revival) of every
        level that ran; if any rank saw non-finite input, nothing changes and this raises."""
        g = self.groups
        levels = stats.counts.shape[0]
        # padding rows were zeroed in _engine_input, so this sees only real input
        stats.bad[0] = (~torch.isfinite(hg.detach())).any().float()
        if self._syncs():
            ddp.all_reduce_sum_(stats.flat)
        ok = stats.bad[0] == 0
        counts, sums, cands = stats.counts, stats.sums, stats.candidates
        has_cands = (stats.totals > 0).unsqueeze(-1).expand(levels, g)
        if self.shared_codebook:
            revived = self._codebook.ema_update_(
                self._slots(0),
                counts.sum(0),
                sums.sum(0),
                None if cands is None else cands[0],
                has_cands[0],
                ok,
            )
            revived = torch.cat([revived[None], torch.zeros_like(counts[1:, :, 0])])
        else:
            flat = slice(0, levels * g)
            revived = self._codebook.ema_update_(
                flat,
                counts.reshape(levels * g, -1),
                sums.reshape(levels * g, *sums.shape[2:]),
                None if cands is None else cands.reshape(levels * g, *cands.shape[2:]),
                has_cands.reshape(-1),
                ok,
            ).view(levels, g)
        self._record_telemetry(counts, revived, levels)
        if self.check_finite and not bool(ok):
            raise NonFiniteInputError(
                "non-finite values (NaN or Inf) in the quantizer input during training; "
                "the codebooks were left unchanged"
            )

    @torch.no_grad()
    def _record_telemetry(self, counts, revived, levels):
        total = counts.sum(-1, keepdim=True)
        p = counts / total.clamp(min=1e-12)
        entropy = -(p * torch.log(p.clamp(min=1e-12))).sum(-1)
        self._usage.fill_(float("nan"))
        self._perplexity.fill_(float("nan"))
        self._revived.zero_()
        self._usage[:, :levels] = (counts > 0).float().mean(-1).T
        self._perplexity[:, :levels] = torch.exp(entropy).T
        self._revived[:, :levels] = revived.T.float()

    @torch.no_grad()
    def _kmeans_init(self, hg, valid, generator):
        data = hg.detach() if valid is None else hg.detach()[:, valid]
        if self.sync_kmeans and self._syncs():
            data = ddp.all_gather_rows(data.contiguous())
        if data.shape[1] == 0:
            return
        if not bool(torch.isfinite(data).all()):
            raise NonFiniteInputError(
                "non-finite values (NaN or Inf) in the quantizer input during training; "
                "k-means initialisation was not run"
            )
        residual = data
        levels = 1 if self.shared_codebook else self.num_quantizers
        for level in range(levels):
            slots = self._slots(level)
            projected = residual
            if self._projections is not None:
                projected = self._projections.project_in(level, residual)
            x = l2norm(projected) if self._codebook.cosine else projected
            means, counts = kmeans(
                x, self.codebook_size, self.kmeans_iters, generator, self._codebook.cosine
            )
            self._codebook.set_codes_(slots, means, counts)
            idx = self._codebook.search(projected, slots)
            code = self._codebook.lookup(idx, slots)
            if self._projections is not None:
                code = self._projections.project_out(level, code)
            residual = residual - code
        self._codebook.initted.fill_(True)

    def _cross_entropy(self, hg, indices, valid):
        """Teacher-forced cross entropy of the codes `indices` under softmax(-distance) at each
        level, summed over levels and groups (the seed's `indices=` path)."""
        if self._projections is not None:
            raise ValueError("cross entropy from indices is not supported with factorized codes")
        flat, _ = self._flatten_indices(indices)
        if flat.shape[-1] != self.num_quantizers or bool((flat < 0).any()):
            raise ValueError(
                "cross entropy needs indices for every level and no dropped (-1) entries"
            )
        g, n_rows, d = hg.shape
        if flat.shape[1] != n_rows:
            raise ValueError(f"indices cover {flat.shape[1]} positions, the input {n_rows}")
        residual, quantized = hg, torch.zeros_like(hg.detach())
        total = hg.new_zeros(())
        for level in range(self.num_quantizers):
            slots = self._slots(level)
            embed = self._codebook.embed[slots]
            if self._codebook.cosine:
                logits = torch.bmm(l2norm(residual), l2norm(embed).transpose(1, 2))
            else:
                logits = (
                    2 * torch.bmm(residual, embed.transpose(1, 2)) - embed.pow(2).sum(-1)[:, None]
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
            code = self._codebook.lookup(target, slots).detach()
            quantized = quantized + code
            residual = residual - code
        out = hg + (quantized - hg).detach() if hg.requires_grad else quantized
        return out, total

    def telemetry(self) -> dict[str, torch.Tensor]:
        """Codebook health from the last training step, each (groups, levels): `usage` (fraction
        of codes hit), `perplexity` (exp entropy of code use), `revived` (dead codes replaced).
        NaN usage/perplexity marks a level that did not run (dropout). Device tensors: reading
        them is the only sync."""
        return {"usage": self._usage, "perplexity": self._perplexity, "revived": self._revived}


class GroupedResidualVQ(_GroupedResidual):
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
        embed = self._codebook.embed
        if self.shared_codebook:
            embed = embed.unsqueeze(0).expand(self.num_quantizers, -1, -1, -1)
        else:
            embed = embed.view(self.num_quantizers, self.groups, *embed.shape[1:])
        return rearrange(embed, "q g c d -> g q c d")

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
        result = self._forward(
            x,
            mask=mask,
            indices=indices,
            return_all_codes=return_all_codes,
            sample_codebook_temp=sample_codebook_temp,
            freeze_codebook=freeze_codebook,
            fixed_seed=rand_quantize_dropout_fixed_seed,
            num_levels=num_levels,
        )
        return result.as_seed_tuple()


class ResidualVQ(_GroupedResidual):
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
        return self._codebook.embed.expand(self.num_quantizers, -1, -1)

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
        result = self._forward(
            x,
            mask=mask,
            indices=indices,
            return_all_codes=return_all_codes,
            sample_codebook_temp=sample_codebook_temp,
            freeze_codebook=freeze_codebook,
            fixed_seed=rand_quantize_dropout_fixed_seed,
        )
        return result.single_group().as_seed_tuple()

    def telemetry(self) -> dict[str, torch.Tensor]:
        """As GroupedResidualVQ.telemetry, each of shape (levels,)."""
        return {k: v[0] for k, v in super().telemetry().items()}


def _weighted_mse(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean squared difference of a and b (g, N, d) over rows weighted by `weight` (N,) -> (g,)."""
    err = (a - b).pow(2)
    if weight is None:
        return err.mean(dim=(1, 2))
    denom = weight.sum().clamp(min=1) * a.shape[-1]
    return (err * weight[None, :, None]).sum(dim=(1, 2)) / denom


def _as_tensor(indices) -> torch.Tensor:
    if isinstance(indices, (list, tuple)):
        return torch.stack(list(indices), dim=-1)
    return indices


def _stack_groups(indices) -> torch.Tensor:
    if isinstance(indices, (list, tuple)):
        return torch.stack(list(indices))
    return indices
