"""Grouped residual vector quantization with structured quantizer dropout: the engine.

    x (b, n, dim) -> groups (g, N, d) in fp32 -> level by level: nearest code of the level's
    input, its output added, taken from the residual -> quantized (b, n, dim),
    indices (g, b, n, q), losses (g, q): a QuantizedResult (codec/quantize/result.py)

All groups and levels live in one `Codebook` bank (slot = level * groups + group): each level is
one batched search over every group, and one EMA step (one all-reduce under DDP) updates every
level after the forward (codec/quantize/statistics.py). What a level does with its code depends
on the kind of code (codec/quantize/levels.py): plain codes, or DAC's factorized ones
(codec/quantize/factorized.py). Which levels run comes from dropout (codec/quantize/dropout.py).

Gradients, plain codes: level l quantizes r_l = x - sum_{j<l} e_j, where the e_j are detached,
so every level gets its own commitment gradient to the input (EnCodec's later levels got none).
The output is x + (sum_l e_l - x).detach(): one straight-through estimator for the whole stack,
so the gradient to the encoder is the identity whatever the depth (the seed's sum of per-level
estimators scales it by the number of levels). `rotation_trick=True` uses the rotation trick
(Fifty et al., 2024) on the whole stack instead.

`ResidualQuantizer.quantize` and `.decode` are the typed interface (the Codec's); the seed's
(vector-quantize-pytorch's) tuples come from the facades in codec/quantize/seed.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from codec.quantize import distributed as ddp
from codec.quantize.codebook import Codebook, kmeans, l2norm
from codec.quantize.dropout import level_weights, levels_to_run
from codec.quantize.errors import NonFiniteInputError
from codec.quantize.factorized import FactorizedCodes
from codec.quantize.levels import PlainCodes
from codec.quantize.options import ResidualOptions
from codec.quantize.result import QuantizedResult
from codec.quantize.statistics import UpdateStatistics


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


# the state-dict entries behind level_shapes' names
_LEVEL_KEYS = {
    "codebook": "_codebook.embed",
    "codebook_avg": "_codebook.embed_avg",
    "cluster_size": "_codebook.cluster_size",
    "in_proj.weight_v": "_projections.in_v",
    "in_proj.weight_g": "_projections.in_g",
    "in_proj.bias": "_projections.in_bias",
    "out_proj.weight_v": "_projections.out_v",
    "out_proj.weight_g": "_projections.out_g",
    "out_proj.bias": "_projections.out_bias",
}


class ResidualQuantizer(nn.Module):
    """Grouped residual VQ built from `ResidualOptions`: `quantize(x (b, n, dim))` ->
    QuantizedResult, `decode(indices (g, b, n, q'))` -> (b, n, dim).

    State: `_codebook` (the bank), `_projections` (factorized codes' projections, or None),
    `project_in` / `project_out` (a group projection when codebook_dim differs from
    dim / groups), and the RNG seed and step in the extra state. Inside, everything is
    (g, N, d) with N = b * n.
    """

    def __init__(self, options: ResidualOptions):
        super().__init__()
        self.options = o = options
        self._projections = None
        self._plain = None
        if o.factorized:
            self._projections = FactorizedCodes(
                o.num_quantizers, o.groups, o.dim_per_group, o.code_dim
            )
        else:
            self._plain = PlainCodes()
        if o.factorized or o.code_dim == o.dim_per_group:
            self.project_in = self.project_out = nn.Identity()
        else:
            self.project_in = GroupedLinear(o.groups, o.dim_per_group, o.code_dim)
            self.project_out = GroupedLinear(o.groups, o.code_dim, o.dim_per_group)
        slots = o.groups if o.shared_codebook else o.groups * o.num_quantizers
        self._codebook = Codebook(
            o.code_dim,
            o.codebook_size,
            slots,
            decay=o.decay,
            eps=o.eps,
            kmeans_init=o.kmeans_init,
            use_cosine_sim=o.use_cosine_sim,
            threshold_ema_dead_code=o.threshold_ema_dead_code,
            ema_update=o.ema_update,
            learnable_codebook=o.learnable_codebook,
            search_precision=o.search_precision,
            search_candidates=o.search_candidates,
            max_search_elements=o.max_search_elements,
            normalized_search=self.code_kind.normalized_search,
        )
        # Counter-based RNG for dropout depths, k-means and dead-code sampling: a seed and a step,
        # identical on every rank, saved with the weights (see get_extra_state).
        self._rng_seed = int(torch.randint(0, 2**62, (1,), device="cpu"))
        self._rng_step = 0
        self._rng_synced = False
        nan = torch.full((o.groups, o.num_quantizers), float("nan"))
        self.register_buffer("_usage", nan.clone(), persistent=False)
        self.register_buffer("_perplexity", nan.clone(), persistent=False)
        self.register_buffer("_revived", torch.zeros(o.groups, o.num_quantizers), persistent=False)

    # -- what it is ----------------------------------------------------------------------------

    @property
    def code_kind(self) -> PlainCodes | FactorizedCodes:
        """What each level does with its code (codec/quantize/levels.py)."""
        return self._plain if self._projections is None else self._projections

    @property
    def bank(self) -> Codebook:
        """Every group's and level's codebook (slot = level * groups + group)."""
        return self._codebook

    @property
    def dim(self) -> int:
        return self.options.dim

    @property
    def groups(self) -> int:
        return self.options.groups

    @property
    def num_quantizers(self) -> int:
        return self.options.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.options.codebook_size

    @property
    def codebook_dim(self) -> int:
        return self.options.code_dim

    @property
    def factorized(self) -> bool:
        return self.options.factorized

    @property
    def commitment_weight(self) -> float:
        return self.options.commitment_weight

    @property
    def codebook_weight(self) -> float:
        return self.options.codebook_weight

    @property
    def threshold_ema_dead_code(self) -> float:
        """A code whose EMA cluster size falls below this is replaced (0: never)."""
        return self._codebook.threshold_ema_dead_code

    def level_codebooks(self) -> torch.Tensor:
        """(g, q, c, d); with a shared codebook every level shows the same codes."""
        embed = self._codebook.embed
        if self.options.shared_codebook:
            embed = embed.unsqueeze(0).expand(self.num_quantizers, -1, -1, -1)
        else:
            embed = embed.view(self.num_quantizers, self.groups, *embed.shape[1:])
        return rearrange(embed, "q g c d -> g q c d")

    def slots(self, level: int) -> slice:
        """The bank's slots of `level`, one per group."""
        if self.options.shared_codebook:
            return slice(0, self.groups)
        return slice(level * self.groups, (level + 1) * self.groups)

    # -- state ---------------------------------------------------------------------------------

    def level_shapes(self) -> dict[str, tuple[int, ...]]:
        """The tensors a checkpoint holds per level and group, by the names other codecs give
        them, with their shapes: what an importer fills through `state_from_levels`."""
        c, k, d = self.codebook_size, self.codebook_dim, self.options.dim_per_group
        shapes = {"codebook": (c, k), "codebook_avg": (c, k), "cluster_size": (c,)}
        if self.factorized:  # weight-normed 1x1 convs: w = g v / |v| per output row
            shapes |= {"in_proj.weight_v": (k, d), "in_proj.weight_g": (k, 1)}
            shapes |= {"in_proj.bias": (k,), "out_proj.weight_v": (d, k)}
            shapes |= {"out_proj.weight_g": (d, 1), "out_proj.bias": (d,)}
        return shapes

    def state_from_levels(
        self, levels: dict[str, list[torch.Tensor]], *, initialised: bool = True
    ) -> dict[str, torch.Tensor]:
        """This quantizer's state dict (names relative to it) with the tensors of `levels` in
        place: each name of `level_shapes` -> one (groups, *shape) tensor per level. What
        `levels` leaves out keeps its value; the codebooks count as initialised (no k-means)
        when `initialised`. ValueError for an unknown name, a missing level or a wrong shape."""
        state = self.state_dict()
        shapes = self.level_shapes()
        for name, tensors in levels.items():
            if name not in shapes:
                raise ValueError(f"no quantizer tensor is called {name}")
            want = (self.groups, *shapes[name])
            if len(tensors) != self.num_quantizers or any(t.shape != want for t in tensors):
                raise ValueError(f"{name}: expected {self.num_quantizers} tensors of {want}")
            key = _LEVEL_KEYS[name]
            if key.startswith("_codebook.") and self.options.shared_codebook:
                raise ValueError(f"{name}: a shared codebook has none per level")
            stacked = torch.stack(list(tensors)).to(state[key].dtype)  # (q, g, ...)
            if key.startswith("_codebook."):  # the bank's slots: level * groups + group
                stacked = stacked.flatten(0, 1)
            state[key] = stacked.reshape(state[key].shape)
        state["_codebook.initted"] = torch.tensor(bool(initialised))
        return state

    def get_extra_state(self) -> torch.Tensor:
        return torch.tensor([self._rng_seed, self._rng_step], dtype=torch.long)

    def set_extra_state(self, state) -> None:
        self._rng_seed, self._rng_step = (int(v) for v in state)

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
        return self.options.sync_codebook is not False

    # -- layouts -------------------------------------------------------------------------------

    def check_input(self, x: torch.Tensor) -> None:
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise ValueError("quantizer input must be a floating-point tensor")
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(
                f"expected input of shape (batch, seq, {self.dim}), got {tuple(x.shape)}"
            )

    def valid_rows(self, mask: torch.Tensor | None, *, batch: int, positions: int):
        """mask (b, n) -> (b * n,) bool, the rows that are real input; None without a mask."""
        if mask is None:
            return None
        if mask.shape != (batch, positions):
            raise ValueError(
                f"expected mask of shape ({batch}, {positions}), got {tuple(mask.shape)}"
            )
        return mask.bool().reshape(-1)

    def to_groups(self, x: torch.Tensor, *, valid: torch.Tensor | None) -> torch.Tensor:
        """x (b, n, dim) -> (g, N, d) in fp32 codebook space, padding rows zeroed."""
        h = self.project_in(x.float())
        hg = rearrange(h, "b n (g d) -> g (b n) d", g=self.groups)
        return hg if valid is None else hg.masked_fill(~valid[None, :, None], 0.0)

    def from_groups(self, out: torch.Tensor, *, batch: int, dtype) -> torch.Tensor:
        """(g, N, d) -> (b, n, dim) in `dtype`."""
        out = self.project_out(rearrange(out, "g n d -> n (g d)")).reshape(batch, -1, self.dim)
        return out.to(dtype)

    def flat_indices(self, indices: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """(g, b, n, q') -> (g, b * n, q') and (b, n), checked against shape and range."""
        g, c = self.groups, self.codebook_size
        if not torch.is_tensor(indices) or indices.dtype.is_floating_point:
            raise ValueError("indices must be an integer tensor")
        if indices.ndim != 4 or indices.shape[0] != g:
            raise ValueError(
                "expected indices of shape (groups, batch, seq, levels) with "
                f"groups={g}, got {tuple(indices.shape)}"
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

    def _present_codes(self, flat: torch.Tensor) -> torch.Tensor:
        """indices (g, N, q') -> codes (q', g, N, d), every level in one lookup; -1 gives
        zeros."""
        g, _, levels = flat.shape
        idx = flat.clamp(min=0)
        if self.options.shared_codebook:  # every level reads the group's one codebook
            codes = self._codebook.lookup(rearrange(idx, "g n q -> g (q n)"), self.slots(0))
            codes = rearrange(codes, "g (q n) d -> q g n d", q=levels)
        else:  # levels 0..q'-1 hold consecutive slots, level-major
            rows = rearrange(idx, "g n q -> (q g) n")
            slots = slice(self.slots(0).start, self.slots(levels - 1).stop)
            codes = self._codebook.lookup(rows, slots)
            codes = rearrange(codes, "(q g) n d -> q g n d", g=g)
        return codes.masked_fill(rearrange(flat < 0, "g n q -> q g n 1"), 0.0)

    def codes_of(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (g, b, n, q') -> codes (g, q, b, n, d) in codebook space; missing levels
        and -1 give zeros."""
        flat, batch_shape = self.flat_indices(indices)
        codes = self._present_codes(flat)
        codes = F.pad(codes, (0, 0, 0, 0, 0, 0, 0, self.num_quantizers - flat.shape[-1]))
        codes = rearrange(codes, "q g n d -> g q n d")
        return codes.reshape(self.groups, self.num_quantizers, *batch_shape, self.codebook_dim)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (g, b, n, q'), q' <= q -> (b, n, dim): the sum of what each present level's
        code stands for (missing levels and -1 count as nothing)."""
        flat, batch_shape = self.flat_indices(indices)
        codes = self._present_codes(flat)  # (q', g, N, d)
        present = rearrange(flat >= 0, "g n q -> q g n 1")
        summed = self.code_kind.decode_levels(codes, present).sum(0)  # (g, N, d)
        out = self.project_out(rearrange(summed, "g n d -> n (g d)"))
        return out.reshape(*batch_shape, self.dim)

    # -- quantizing ----------------------------------------------------------------------------

    def quantize(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        num_levels: int | None = None,
        temperature: float | None = None,
        freeze: bool = False,
        fixed_seed: int | None = None,
        all_codes: bool = False,
    ) -> QuantizedResult:
        """x (b, n, dim) -> quantized (b, n, dim), indices (g, b, n, q) (-1 for a level or
        position not run), losses (g, q), and with `all_codes` the codes (g, q, b, n, d).
        `mask` (b, n): the real positions; `num_levels`: run only the first levels;
        `temperature`: sample codes (training only); `freeze`: no codebook update;
        `fixed_seed`: the seed's reproducible dropout draw. In training, a step with updates
        on ends with one EMA step of every level that ran."""
        self.check_input(x)
        b, n, _ = x.shape
        valid = self.valid_rows(mask, batch=b, positions=n)
        with torch.autocast(device_type=x.device.type, enabled=False):
            hg = self.to_groups(x, valid=valid)
            result = self._quantize(
                hg,
                valid=valid,
                batch=b,
                temperature=temperature,
                freeze=freeze,
                fixed_seed=fixed_seed,
                num_levels=num_levels,
            )
            out = self.from_groups(result.quantized, batch=b, dtype=x.dtype)
        indices = result.indices.reshape(self.groups, b, n, -1)
        codes = self.codes_of(indices) if all_codes else None
        return QuantizedResult(out, indices, result.losses, codes)

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
        (g, N, q), losses (g, q)."""
        update = self.training and not (freeze or self.options.freeze_codebook)
        generator = self._begin_training_step(hg, valid=valid, update=update)
        levels, item_depths = levels_to_run(
            self.options,
            training=self.training,
            batch=batch,
            fixed_seed=fixed_seed,
            generator=generator,
            num_levels=num_levels,
        )
        weights = level_weights(
            valid=valid,
            item_depths=item_depths,
            levels=levels,
            rows_per_item=hg.shape[1] // batch,
            device=hg.device,
        )
        stats = None
        if update:
            stats = UpdateStatistics.begin(
                hg,
                weights,
                codes=(self.codebook_size, self.codebook_dim),
                revive=self._codebook.threshold_ema_dead_code > 0,
                sync=self._syncs(),
            )
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

    def _temperature(self, temperature: float | None) -> float:
        """Sampling temperature of this call; 0 (nearest code) outside training."""
        if temperature is None and self.options.stochastic_sample_codes:
            temperature = self.options.sample_codebook_temp
        return float(temperature or 0.0) if self.training else 0.0

    def _run_levels(
        self,
        hg: torch.Tensor,
        *,
        weights: list[torch.Tensor | None],
        temperature: float,
        stats: UpdateStatistics | None,
        generator: torch.Generator | None,
        track_grad: bool,
    ):
        """Quantize hg (g, N, d) level by level, each level on the detached residual of the ones
        before -> (quantized (g, N, d), indices (g, N, q), losses (g, q)). Levels past
        len(weights), and rows of weight 0, get index -1; their loss is 0, and in eval every
        loss is 0. Fills `stats` when given. The quantized sum carries a gradient only where
        the kind of code gives its levels one (factorized codes)."""
        kind = self.code_kind
        g, n_rows, _ = hg.shape
        q, levels = self.num_quantizers, len(weights)
        residual = hg if track_grad else hg.detach().clone()
        quantized = torch.zeros_like(hg.detach())
        codes = torch.full((q, g, n_rows), -1, dtype=torch.long, device=hg.device)
        losses = [hg.new_zeros(g) for _ in range(q)]
        for level in range(levels):
            slots = self.slots(level)
            x = kind.level_input(level, residual)
            searched = x.detach()
            idx = self._codebook.search(searched, slots, temperature)
            code = self._codebook.lookup(idx, slots)
            w = weights[level]
            codes[level] = idx if w is None else torch.where(w > 0, idx, -1)
            if stats is not None:
                stats.record(level, searched, idx, w, generator)
            if self.training:
                losses[level] = kind.loss(x, code, w, self.options)
            out = kind.level_output(level, x, code)
            if w is not None:
                out = out * w[None, :, None]
            quantized = quantized + out if out.requires_grad else quantized.add_(out)
            if level + 1 < levels:  # in place where no graph holds the residual
                step = out.detach()
                kept = track_grad or x.requires_grad
                residual = residual - step if kept else residual.sub_(step)
        return quantized, rearrange(codes, "q g n -> g n q"), torch.stack(losses, dim=-1)

    def _straight_through(self, hg, quantized, *, track_grad: bool) -> torch.Tensor:
        """The value of `quantized` (g, N, d) with a gradient to hg: the identity, or with
        rotation_trick the rotation carrying hg onto it (a kind of code whose levels carry
        their own gradient keeps its sum as it is)."""
        if not (track_grad and self.code_kind.straight_through):
            return quantized
        if self.options.rotation_trick:
            return rotate_to(hg, quantized)
        return hg + (quantized - hg).detach()

    # -- codebook maintenance ------------------------------------------------------------------

    def _apply_update(self, stats: UpdateStatistics, *, hg: torch.Tensor) -> None:
        """Sum the statistics over ranks and take one EMA step (with dead-code revival) of every
        level that ran; if any rank saw non-finite input, nothing changes and this raises."""
        g = self.groups
        levels = stats.counts.shape[0]
        # padding rows were zeroed in to_groups, so this sees only real input
        ok = stats.all_reduce(hg, sync=self._syncs())
        counts, sums, cands = stats.counts, stats.sums, stats.candidates
        has_cands = (stats.totals > 0).unsqueeze(-1).expand(levels, g)
        if self.options.shared_codebook:
            revived = self._codebook.ema_update_(
                self.slots(0),
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
        if self.options.check_finite and not bool(ok):
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
        if self.options.sync_kmeans and self._syncs():
            data = ddp.all_gather_rows(data.contiguous())
        if data.shape[1] == 0:
            return
        if not bool(torch.isfinite(data).all()):
            raise NonFiniteInputError(
                "non-finite values (NaN or Inf) in the quantizer input during training; "
                "k-means initialisation was not run"
            )
        kind, cosine, iters = self.code_kind, self._codebook.cosine, self.options.kmeans_iters
        residual = data
        levels = 1 if self.options.shared_codebook else self.num_quantizers
        for level in range(levels):
            slots = self.slots(level)
            projected = kind.level_input(level, residual)
            x = l2norm(projected) if cosine else projected
            means, counts = kmeans(x, self.codebook_size, iters, generator, cosine)
            self._codebook.set_codes_(slots, means, counts)
            idx = self._codebook.search(projected, slots)
            residual = residual - kind.code_output(level, self._codebook.lookup(idx, slots))
        self._codebook.initted.fill_(True)

    def telemetry(self) -> dict[str, torch.Tensor]:
        """Codebook health from the last training step, each (groups, levels): `usage` (fraction
        of codes hit), `perplexity` (exp entropy of code use), `revived` (dead codes replaced).
        NaN usage/perplexity marks a level that did not run (dropout). Device tensors: reading
        them is the only sync."""
        return {"usage": self._usage, "perplexity": self._perplexity, "revived": self._revived}
