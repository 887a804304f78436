"""A bank of codebooks searched and updated together.

`Codebook` holds `num_codebooks` independent codebooks in one tensor, embed: (k, c, d), so that
every group (and, in a residual quantizer, every level) is searched with one batched matmul and
updated with one EMA step. It knows nothing of residuals, dropout or groups: the residual
quantizer decides which slots a call touches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SEARCH_PRECISIONS = ("float32", "bfloat16")


def l2norm(t: torch.Tensor) -> torch.Tensor:
    return F.normalize(t, dim=-1)


def nearest_codes(
    x: torch.Tensor,
    codebook: torch.Tensor,
    *,
    cosine: bool = False,
    temperature: float = 0.0,
    precision: str = "float32",
    candidates: int = 3,
    max_elements: int = 1 << 20,
) -> torch.Tensor:
    """Index of the nearest code for each vector: x (k, n, d), codebook (k, c, d) -> (k, n) long.

    The (k, n, c) score matrix is computed in row chunks of at most `max_elements` scores into
    one reused buffer, so memory stays bounded for large codebooks and no large temporary is
    allocated per chunk. With `temperature` > 0 a code is sampled from
    softmax(-distance / temperature) (Gumbel-max) instead of taking the nearest.
    `precision="bfloat16"` shortlists `candidates` codes per vector from bf16 scores and re-ranks
    them exactly in fp32: faster where bf16 matmuls are, and nearly always the exact answer
    (scripts/bench/bench_quantize.py measures how often).
    """
    k, n, d = x.shape
    c = codebook.shape[1]
    codebook = codebook.detach().float()
    x = x.detach().float()
    bias = None if cosine else -0.5 * codebook.pow(2).sum(-1).unsqueeze(1)  # (k, 1, c)
    out = torch.empty(k, n, dtype=torch.long, device=x.device)
    chunk = max(1, min(n, max_elements // max(1, k * c)))
    if precision == "bfloat16" and temperature <= 0 and candidates < c:
        _shortlist_and_rerank(x, codebook, bias, candidates, chunk, out)
        return out
    codebook_t = codebook.transpose(1, 2)
    buffer = x.new_empty(k, chunk, c)
    for start in range(0, n, chunk):
        xc = x[:, start : start + chunk]
        scores = buffer[:, : xc.shape[1]]
        if bias is None:
            torch.bmm(xc, codebook_t, out=scores)
        else:
            torch.baddbmm(bias, xc, codebook_t, out=scores)
        if temperature > 0:
            logits = scores * (1.0 if cosine else 2.0) / temperature
            u = torch.rand_like(logits).clamp_(1e-20, 1.0)
            scores = logits - torch.log(-torch.log(u))
        out[:, start : start + chunk] = scores.max(-1).indices
    return out


def _shortlist_and_rerank(x, codebook, bias, candidates, chunk, out):
    """bf16 scores (with the bias as an extra input column, which costs less than a bf16 add)
    pick `candidates` codes; exact fp32 scores of those pick the winner."""
    k, n, d = x.shape
    if bias is None:  # cosine: plain dot products
        x_low = x.to(torch.bfloat16)
        codebook_low = codebook.transpose(1, 2).to(torch.bfloat16)
    else:
        x_low = torch.cat([x, x.new_ones(k, n, 1)], -1).to(torch.bfloat16)
        codebook_low = torch.cat([codebook.transpose(1, 2), bias], 1).to(torch.bfloat16)
    for start in range(0, n, chunk):
        xc = x[:, start : start + chunk]
        m = xc.shape[1]
        top = torch.bmm(x_low[:, start : start + chunk], codebook_low).topk(candidates, -1).indices
        picked = torch.gather(
            codebook.unsqueeze(1).expand(-1, m, -1, -1), 2, top.unsqueeze(-1).expand(-1, -1, -1, d)
        )  # (k, m, candidates, d)
        exact = torch.einsum("kmd,kmjd->kmj", xc, picked)
        if bias is not None:
            exact = exact + torch.gather(bias.expand(-1, m, -1), 2, top)
        out[:, start : start + m] = top.gather(2, exact.max(-1, keepdim=True).indices)[..., 0]


def assignment_sums(x: torch.Tensor, indices: torch.Tensor, weight: torch.Tensor, c: int):
    """Per-code counts (k, c) and vector sums (k, c, d) of x (k, n, d) assigned to `indices` (k, n),
    each row weighted by `weight` (n,) (0 for padding or dropped items). Uses index_add, never a
    one-hot (n x c) matrix."""
    k, n, d = x.shape
    offsets = torch.arange(k, device=x.device).unsqueeze(1) * c
    flat = (indices + offsets).reshape(-1)
    w = weight.to(x.dtype).expand(k, n).reshape(-1)
    xw = torch.where(w.unsqueeze(1) > 0, x.reshape(-1, d), 0.0) * w.unsqueeze(1)
    counts = x.new_zeros(k * c).index_add_(0, flat, w)
    sums = x.new_zeros(k * c, d).index_add_(0, flat, xw)
    return counts.view(k, c), sums.view(k, c, d)


def kmeans(
    x: torch.Tensor, num_codes: int, iters: int, generator: torch.Generator, cosine: bool = False
):
    """Batched Lloyd's k-means: x (k, n, d) -> means (k, c, d), cluster sizes (k, c).

    Initial means are rows drawn with `generator` (identical on every rank); empty clusters keep
    their previous mean."""
    k, n, d = x.shape
    pick = torch.randint(0, n, (k, num_codes), generator=generator).to(x.device)
    means = torch.gather(x, 1, pick.unsqueeze(-1).expand(-1, -1, d))
    weight = x.new_ones(n)
    counts = x.new_zeros(k, num_codes)
    for _ in range(max(1, iters)):
        idx = nearest_codes(x, means, cosine=cosine)
        counts, sums = assignment_sums(x, idx, weight, num_codes)
        new = sums / counts.clamp(min=1).unsqueeze(-1)
        if cosine:
            new = l2norm(new)
        means = torch.where(counts.unsqueeze(-1) > 0, new, means)
    return means, counts


class Codebook(nn.Module):
    """`num_codebooks` codebooks of `codebook_size` codes of size `dim`.

    Buffers: embed (k, c, d) (a Parameter when `learnable_codebook`), embed_avg (k, c, d) and
    cluster_size (k, c) for the EMA, initted (bool). EMA follows VQ-VAE-2 / SoundStream:
    cluster_size and embed_avg decay by `decay`, embed = embed_avg / Laplace-smoothed
    cluster_size. Codes whose EMA cluster size falls below `threshold_ema_dead_code` are
    replaced by vectors of the current batch. `kmeans_init` only starts the codes at zero with
    initted False; the residual quantizer runs k-means (level by level, on residuals) and owns
    its iteration count. `normalized_search` (factorized codes, DAC) compares L2-normalised
    vectors but keeps and returns the raw codes.
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        num_codebooks: int = 1,
        *,
        decay: float = 0.8,
        eps: float = 1e-5,
        kmeans_init: bool = False,
        use_cosine_sim: bool = False,
        threshold_ema_dead_code: float = 0.0,
        ema_update: bool = True,
        learnable_codebook: bool = False,
        search_precision: str = "float32",
        search_candidates: int = 3,
        max_search_elements: int = 1 << 20,
        normalized_search: bool = False,
    ):
        super().__init__()
        if codebook_size < 2:
            raise ValueError(f"codebook_size must be at least 2, got {codebook_size}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if search_precision not in SEARCH_PRECISIONS:
            raise ValueError(f"search_precision must be one of {SEARCH_PRECISIONS}")
        self.dim, self.codebook_size, self.num_codebooks = dim, codebook_size, num_codebooks
        self.decay, self.eps = decay, eps
        self.cosine = use_cosine_sim
        self.threshold_ema_dead_code = float(threshold_ema_dead_code)
        self.ema_update = ema_update and not learnable_codebook
        self.learnable = learnable_codebook
        self.search_precision = search_precision
        self.search_candidates = search_candidates
        self.max_search_elements = max_search_elements

        self.normalized_search = normalized_search
        if kmeans_init:
            embed = torch.zeros(num_codebooks, codebook_size, dim)
        elif normalized_search:  # DAC's nn.Embedding: the raw codes are what a level outputs
            embed = torch.randn(num_codebooks, codebook_size, dim)
        else:
            embed = torch.empty(num_codebooks, codebook_size, dim)
            nn.init.kaiming_uniform_(embed)
            if use_cosine_sim:
                embed = l2norm(embed)
        if learnable_codebook:
            self.embed = nn.Parameter(embed)
        else:
            self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())
        self.register_buffer("cluster_size", torch.zeros(num_codebooks, codebook_size))
        self.register_buffer("initted", torch.tensor(not kmeans_init))

    def search(self, x: torch.Tensor, slots: slice, temperature: float = 0.0) -> torch.Tensor:
        """Nearest code in codebooks `slots` for x (k, n, d) -> indices (k, n); with
        `normalized_search`, by the L2 distance of the normalised x to the normalised codes."""
        embed = self.embed[slots]
        if self.cosine:
            x = l2norm(x)
        elif self.normalized_search:
            x, embed = l2norm(x), l2norm(embed)
        return nearest_codes(
            x,
            embed,
            cosine=self.cosine,
            temperature=temperature,
            precision=self.search_precision,
            candidates=self.search_candidates,
            max_elements=self.max_search_elements,
        )

    def lookup(self, indices: torch.Tensor, slots: slice) -> torch.Tensor:
        """Codes of codebooks `slots`: indices (k, n) in [0, c) -> vectors (k, n, d).

        Differentiable with respect to the codebook when it is learnable."""
        embed = self.embed[slots]
        k, c, d = embed.shape
        offsets = torch.arange(k, device=indices.device).unsqueeze(1) * c
        return F.embedding(indices + offsets, embed.reshape(k * c, d))

    @torch.no_grad()
    def set_codes_(self, slots: slice, means: torch.Tensor, counts: torch.Tensor) -> None:
        """Initialise codebooks `slots` from k-means means (k, c, d) and cluster sizes (k, c)."""
        self.embed.data[slots] = means
        self.cluster_size[slots] = counts
        self.embed_avg[slots] = means * counts.unsqueeze(-1)

    @torch.no_grad()
    def ema_update_(
        self,
        slots: slice,
        counts: torch.Tensor,
        sums: torch.Tensor,
        candidates: torch.Tensor | None,
        has_candidates: torch.Tensor | None,
        ok: torch.Tensor,
    ) -> torch.Tensor:
        """One EMA step for codebooks `slots` from global batch statistics.

        counts (k, c), sums (k, c, d), candidates (k, c, d): replacement vectors for dead codes,
        has_candidates (k,): whether the batch had any vector for that codebook, ok: a bool
        scalar tensor; when False (non-finite input somewhere) nothing changes. Returns how many
        codes were revived per codebook, (k,). No host sync.
        """
        decay = self.decay
        cluster_size = self.cluster_size[slots] * decay + counts * (1 - decay)
        embed = self.embed.data[slots]
        embed_avg = self.embed_avg[slots]
        if self.ema_update:
            embed_avg = embed_avg * decay + sums * (1 - decay)
            total = cluster_size.sum(-1, keepdim=True)
            smoothed = (cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
            embed = embed_avg / smoothed.unsqueeze(-1)
            if self.cosine:
                embed = l2norm(embed)
        revived = counts.new_zeros(counts.shape[0])
        if self.threshold_ema_dead_code > 0 and candidates is not None:
            threshold = self.threshold_ema_dead_code
            dead = (cluster_size < threshold) & has_candidates.unsqueeze(-1)
            fresh = l2norm(candidates) if self.cosine else candidates
            embed = torch.where(dead.unsqueeze(-1), fresh, embed)
            embed_avg = torch.where(dead.unsqueeze(-1), fresh * threshold, embed_avg)
            cluster_size = torch.where(dead, torch.full_like(cluster_size, threshold), cluster_size)
            revived = dead.sum(-1).to(counts.dtype)
        self.cluster_size[slots] = torch.where(ok, cluster_size, self.cluster_size[slots])
        self.embed_avg[slots] = torch.where(ok, embed_avg, self.embed_avg[slots])
        self.embed.data[slots] = torch.where(ok, embed, self.embed.data[slots])
        return revived * ok
