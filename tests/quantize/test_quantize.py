"""Quantizer correctness: seed interface, dropout, decoding, bad input, precision, state."""

import pytest
import torch
from references import reference

from codec.quantize import (
    Codebook,
    GroupedResidualVQ,
    NonFiniteInputError,
    ResidualVQ,
    VectorQuantize,
)
from codec.quantize.codebook import nearest_codes
from codec.quantize.dropout import kept_levels


def small_grvq(**kw):
    opts = dict(dim=32, groups=2, num_quantizers=4, codebook_size=16)
    opts.update(kw)
    return GroupedResidualVQ(**opts)


def test_shapes_follow_the_seed():
    rvq = ResidualVQ(dim=24, num_quantizers=3, codebook_size=8)
    out, idx, losses, codes = rvq(torch.randn(2, 5, 24), return_all_codes=True)
    assert out.shape == (2, 5, 24) and idx.shape == (2, 5, 3) and losses.shape == (3,)
    assert codes.shape == (3, 2, 5, 24) and rvq.codebooks.shape == (3, 8, 24)
    grvq = small_grvq()
    out, idx, losses, codes = grvq(torch.randn(2, 5, 32), return_all_codes=True)
    assert out.shape == (2, 5, 32) and idx.shape == (2, 2, 5, 4) and losses.shape == (2, 4)
    assert codes.shape == (2, 4, 2, 5, 16) and grvq.codebooks.shape == (2, 4, 16, 16)
    vq = VectorQuantize(dim=24, codebook_size=8)
    out, idx, loss = vq(torch.randn(2, 5, 24))
    assert idx.shape == (2, 5) and loss.shape == (1,) and vq.codebook.shape == (8, 24)


@pytest.mark.parametrize(
    "kw", [{}, {"codebook_dim": 6}, {"use_cosine_sim": True}, {"shared_codebook": True}]
)
def test_eval_forward_equals_decoding_from_indices(kw):
    grvq = small_grvq(**kw).eval()
    x = torch.randn(3, 7, 32)
    out, idx, _, codes = grvq(x, return_all_codes=True)
    torch.testing.assert_close(out, grvq.get_output_from_indices(idx))
    torch.testing.assert_close(codes, grvq.get_codes_from_indices(idx))
    rvq = ResidualVQ(dim=16, num_quantizers=3, codebook_size=8, **kw).eval()
    out, idx, _ = rvq(x[..., :16])
    torch.testing.assert_close(out, rvq.get_output_from_indices(idx))


def test_image_feature_maps():
    grvq = small_grvq(accept_image_fmap=True).eval()
    x = torch.randn(2, 32, 3, 5)
    out, idx, _ = grvq(x)
    assert out.shape == x.shape and idx.shape == (2, 2, 3, 5, 4)
    torch.testing.assert_close(out, grvq.get_output_from_indices(idx))


def test_same_codes_as_vector_quantize_pytorch():
    vqp = reference("vector_quantize_pytorch")
    kw = dict(dim=64, groups=2, num_quantizers=4, codebook_size=32)
    ours = GroupedResidualVQ(**kw).eval()
    theirs = vqp.GroupedResidualVQ(**kw, rotation_trick=False).eval()
    for g, rvq in enumerate(theirs.rvqs):
        for level, layer in enumerate(rvq.layers):
            layer._codebook.embed.data.copy_(ours.codebooks[g, level][None])
    x = torch.randn(3, 40, 64)
    out, idx, _ = ours(x)
    ref_out, ref_idx, _ = theirs(x)
    assert torch.equal(idx, ref_idx)
    torch.testing.assert_close(out, ref_out)


def test_error_falls_as_levels_are_added():
    grvq = small_grvq(num_quantizers=6, kmeans_init=True, decay=0.9).train()
    x = torch.randn(8, 64, 32)
    for _ in range(5):
        grvq(x)
    grvq.eval()
    _, idx, _ = grvq(x)
    errors = [
        (grvq.get_output_from_indices(idx[..., :level]) - x).pow(2).mean().item()
        for level in range(1, 7)
    ]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors


# -- structured dropout -----------------------------------------------------------------------


def observed_depths(q, multiple_of, cutoff=0, steps=600, groups=2):
    grvq = GroupedResidualVQ(
        dim=8 * groups,
        groups=groups,
        num_quantizers=q,
        codebook_size=4,
        quantize_dropout=True,
        quantize_dropout_multiple_of=multiple_of,
        quantize_dropout_cutoff_index=cutoff,
    ).train()
    x = torch.randn(2, 3, 8 * groups)
    depths = []
    for _ in range(steps):
        _, idx, losses = grvq(x)
        kept = (idx[0, 0, 0] >= 0).sum().item()
        # one depth for every group and position, -1 exactly past it, loss 0 there
        expected = torch.arange(q) < kept
        assert torch.equal(idx >= 0, expected.expand_as(idx))
        assert torch.all(losses[:, kept:] == 0) and torch.all(losses[:, :kept] > 0)
        depths.append(kept)
    return torch.tensor(depths)


def test_dropout_depth_distribution_multiple_of_4():
    depths = observed_depths(q=8, multiple_of=4)
    assert set(depths.tolist()) == {4, 8}
    assert abs((depths == 4).float().mean().item() - 0.5) < 0.07


def test_dropout_depth_edge_case_q6_multiple_of_4():
    depths = observed_depths(q=6, multiple_of=4)
    assert set(depths.tolist()) == {4, 6}
    assert abs((depths == 4).float().mean().item() - 4 / 6) < 0.07


def test_dropout_cutoff_is_respected():
    depths = observed_depths(q=8, multiple_of=1, cutoff=5, steps=300)
    assert set(depths.tolist()) == {6, 7, 8}


def test_kept_levels_rule_matches_the_seed():
    # the seed keeps round_up(i + 1, multiple_of) levels for a drawn index i, at most q
    assert [kept_levels(i, 6, 4) for i in range(6)] == [4, 4, 4, 4, 6, 6]
    assert [kept_levels(i, 8, 1) for i in range(8)] == list(range(1, 9))


def test_fixed_seed_gives_the_same_depth():
    grvq = small_grvq(quantize_dropout=True).train()
    x = torch.randn(2, 3, 32)
    runs = {(grvq(x, rand_quantize_dropout_fixed_seed=7)[1] >= 0).sum().item() for _ in range(5)}
    assert len(runs) == 1


def test_per_item_dropout():
    grvq = small_grvq(
        num_quantizers=8,
        quantize_dropout=True,
        quantize_dropout_per_item=True,
        quantize_dropout_prob=0.5,
    ).train()
    x = torch.randn(400, 2, 32)
    _, idx, _ = grvq(x)
    kept = (idx[0, :, 0] >= 0).sum(-1)  # (batch,)
    assert torch.equal(idx[0] >= 0, idx[1] >= 0)  # groups share each item's depth
    full = (kept == 8).float().mean().item()
    assert 0.5 < full < 0.65  # half the items keep all levels, plus 1/8 of the dropped ones
    assert len(set(kept.tolist())) == 8


def test_decoding_fewer_levels_treats_missing_as_zero():
    grvq = small_grvq().eval()
    _, idx, _ = grvq(torch.randn(2, 5, 32))
    dropped = idx.clone()
    dropped[..., 2:] = -1
    torch.testing.assert_close(
        grvq.get_output_from_indices(idx[..., :2]), grvq.get_output_from_indices(dropped)
    )


# -- gradients --------------------------------------------------------------------------------


def test_every_level_gets_its_own_commitment_gradient():
    grvq = small_grvq().train()
    x = torch.randn(2, 6, 32, requires_grad=True)
    _, _, losses = grvq(x)
    for level in range(4):
        (grad,) = torch.autograd.grad(losses[:, level].sum(), x, retain_graph=True)
        assert grad.abs().sum() > 0, level


def test_straight_through_gradient_is_identity():
    grvq = small_grvq().train()
    x = torch.randn(2, 6, 32, requires_grad=True)
    out, _, _ = grvq(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, torch.ones_like(x))


def test_rotation_trick_keeps_the_value_and_passes_gradient():
    grvq = small_grvq(rotation_trick=True).train()
    x = torch.randn(2, 6, 32, requires_grad=True)
    out, idx, _ = grvq(x, freeze_codebook=True)
    torch.testing.assert_close(out, grvq.eval().get_output_from_indices(idx), atol=1e-5, rtol=1e-5)
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_learnable_codebook_receives_gradient():
    rvq = ResidualVQ(dim=16, num_quantizers=2, codebook_size=8, learnable_codebook=True).train()
    _, _, losses = rvq(torch.randn(2, 6, 16))
    losses.sum().backward()
    assert rvq._codebook.embed.grad is not None and rvq._codebook.embed.grad.abs().sum() > 0


def test_cross_entropy_path():
    rvq = ResidualVQ(dim=16, num_quantizers=3, codebook_size=8).eval()
    x = torch.randn(2, 6, 16)
    _, idx, _ = rvq(x)
    x_pred = torch.randn(2, 6, 16, requires_grad=True)
    out, ce = rvq(x_pred, indices=idx)
    ce.backward()
    assert ce.ndim == 0 and ce > 0 and x_pred.grad.abs().sum() > 0
    torch.testing.assert_close(out, rvq.get_output_from_indices(idx))
    grvq = small_grvq().eval()
    _, gidx, _ = grvq(torch.randn(2, 6, 32))
    _, gce = grvq(torch.randn(2, 6, 32), indices=gidx)
    assert gce.ndim == 0 and torch.isfinite(gce)


def test_stochastic_sampling_only_in_training():
    grvq = small_grvq(stochastic_sample_codes=True, sample_codebook_temp=10.0)
    x = torch.randn(4, 50, 32)
    grvq.eval()
    a, b = grvq(x)[1], grvq(x)[1]
    assert torch.equal(a, b)
    grvq.train()
    c = grvq(x, freeze_codebook=True)[1]
    assert not torch.equal(a, c)


# -- masks ------------------------------------------------------------------------------------


def test_padding_never_enters_codebook_statistics():
    opts = dict(kmeans_init=True, threshold_ema_dead_code=1, decay=0.5)
    masked, plain = small_grvq(**opts).train(), small_grvq(**opts).train()
    plain.load_state_dict(masked.state_dict())
    x = torch.randn(2, 20, 32)
    padded = torch.cat([x, torch.full((2, 5, 32), 1e4)], dim=1)
    mask = torch.cat([torch.ones(2, 20), torch.zeros(2, 5)], dim=1).bool()
    for _ in range(3):
        out, idx, losses_masked = masked(padded, mask=mask)
        _, _, losses_plain = plain(x)
    torch.testing.assert_close(masked._codebook.embed, plain._codebook.embed)
    torch.testing.assert_close(losses_masked, losses_plain)
    assert torch.all(idx[:, :, 20:] == -1) and torch.all(out[:, 20:] == 0)


# -- bad input ---------------------------------------------------------------------------------


def test_bad_input_names_the_expected_shape_or_range():
    grvq = small_grvq()
    with pytest.raises(ValueError, match=r"\(batch, seq, 32\)"):
        grvq(torch.randn(2, 5, 31))
    with pytest.raises(ValueError, match=r"\(batch, seq, 32\)"):
        grvq(torch.randn(5, 32))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        grvq.get_output_from_indices(torch.full((2, 1, 5, 4), 16))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        grvq.get_output_from_indices(torch.full((2, 1, 5, 4), -2))
    with pytest.raises(ValueError, match="levels"):
        grvq.get_output_from_indices(torch.zeros(2, 1, 5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="groups=2"):
        grvq.get_output_from_indices(torch.zeros(3, 1, 5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="mask"):
        grvq(torch.randn(2, 5, 32), mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="orthogonal_reg_weight"):
        small_grvq(orthogonal_reg_weight=1.0)


@pytest.mark.parametrize("kmeans_init", [False, True])
def test_non_finite_input_in_training_leaves_the_codebook_unchanged(kmeans_init):
    grvq = small_grvq(kmeans_init=kmeans_init, threshold_ema_dead_code=2).train()
    if kmeans_init:
        grvq(torch.randn(2, 30, 32))
    before = {k: v.clone() for k, v in grvq.state_dict().items()}
    for bad in (float("nan"), float("inf")):
        x = torch.randn(2, 30, 32)
        x[1, 3, 5] = bad
        with pytest.raises(ValueError, match="non-finite"):
            grvq(x)
    after = grvq.state_dict()
    for key, value in before.items():
        if key.endswith("_extra_state"):
            continue
        assert torch.equal(value, after[key]), key


@pytest.mark.parametrize("kmeans_init", [False, True])
def test_non_finite_input_raises_a_type_a_training_loop_can_catch(kmeans_init):
    # with kmeans_init the first step's k-means sees the NaN; without, the EMA update does
    grvq = small_grvq(kmeans_init=kmeans_init).train()
    x = torch.randn(2, 30, 32)
    x[0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteInputError, match="non-finite"):
        grvq(x)
    assert issubclass(NonFiniteInputError, ValueError)
    grvq.eval()(x)  # eval never updates the codebooks, so it does not check


# -- precision, search, state -----------------------------------------------------------------


def test_bf16_autocast_keeps_the_quantizer_in_fp32():
    grvq = small_grvq().eval()
    x = torch.randn(2, 40, 32)
    _, ref, _ = grvq(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, idx, _ = grvq(x)
    assert torch.equal(idx, ref) and out.dtype == x.dtype
    grvq.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grvq(x.bfloat16())
    assert grvq._codebook.embed.dtype == torch.float32
    assert grvq._codebook.embed_avg.dtype == torch.float32


def test_chunked_search_matches_one_pass_for_a_large_codebook():
    codebook = torch.randn(1, 65536, 16)
    x = torch.randn(1, 300, 16)
    chunked = nearest_codes(x, codebook, max_elements=65536 * 7)
    full = torch.cdist(x[0], codebook[0]).argmin(-1)
    assert torch.equal(chunked[0], full)


def test_bf16_search_agrees_with_exact_search():
    codebook = Codebook(64, 1024, 2, search_precision="bfloat16")
    exact = Codebook(64, 1024, 2)
    exact.load_state_dict(codebook.state_dict())
    x = torch.randn(2, 4000, 64)
    agree = (codebook.search(x, slice(0, 2)) == exact.search(x, slice(0, 2))).float().mean()
    assert agree > 0.999


def test_state_dict_round_trip_continues_identically():
    opts = dict(quantize_dropout=True, threshold_ema_dead_code=2, kmeans_init=True)
    a = small_grvq(**opts).train()
    x = torch.randn(3, 20, 32)
    a(x)
    b = small_grvq(**opts).train()
    b.load_state_dict(a.state_dict())
    for _ in range(3):
        assert torch.equal(a(x)[1], b(x)[1])
    torch.testing.assert_close(a._codebook.embed, b._codebook.embed)


def test_telemetry_after_a_training_step():
    grvq = small_grvq(threshold_ema_dead_code=2).train()
    grvq(torch.randn(4, 50, 32))
    stats = grvq.telemetry()
    assert stats["usage"].shape == (2, 4)
    assert torch.all((stats["usage"] > 0) & (stats["usage"] <= 1))
    assert torch.all((stats["perplexity"] >= 1) & (stats["perplexity"] <= 16))
    assert torch.all(stats["revived"] >= 0)
    assert ResidualVQ(dim=8, num_quantizers=2, codebook_size=4).telemetry()["usage"].shape == (2,)


def test_num_levels_runs_only_the_first_levels():
    grvq = small_grvq().eval()
    x = torch.randn(2, 9, 32)
    _, full, _ = grvq(x)
    out, idx, _ = grvq(x, num_levels=2)
    assert torch.equal(idx[..., :2], full[..., :2]) and torch.all(idx[..., 2:] == -1)
    torch.testing.assert_close(out, grvq.get_output_from_indices(full[..., :2]))
    with pytest.raises(ValueError, match="num_levels"):
        grvq(x, num_levels=5)


# -- codebooks loaded from a trained model (importing and fine-tuning) -------------------------


def load_codebook_state(quantizer, *, embed, embed_avg, cluster_size, initted=True):
    state = quantizer.state_dict()
    state["_codebook.embed"] = embed
    state["_codebook.embed_avg"] = embed_avg
    state["_codebook.cluster_size"] = cluster_size
    state["_codebook.initted"] = torch.tensor(initted)
    quantizer.load_state_dict(state)


def test_a_loaded_initialised_codebook_skips_kmeans_and_continues_its_ema():
    decay, eps, c, d = 0.9, 1e-5, 8, 4
    rvq = ResidualVQ(
        dim=d,
        num_quantizers=2,
        codebook_size=c,
        kmeans_init=True,
        decay=decay,
        eps=eps,
        threshold_ema_dead_code=2,
    ).train()
    g = torch.Generator().manual_seed(0)
    embed = torch.randn(2, c, d, generator=g)
    # embed_avg unrelated to embed and sizes far above the dead-code threshold: the step below
    # must start from exactly these statistics
    embed_avg = torch.randn(2, c, d, generator=g)
    cluster_size = 10 + 10 * torch.rand(2, c, generator=g)
    load_codebook_state(rvq, embed=embed, embed_avg=embed_avg, cluster_size=cluster_size)
    x = torch.randn(3, 10, d, generator=g)
    _, idx, _ = rvq(x)

    # by hand: each level assigns its residual to the nearest loaded code, then one EMA step
    residual = x.reshape(-1, d)
    want_embed, want_size = [], []
    for level in range(2):
        nearest = torch.cdist(residual, embed[level]).argmin(-1)
        assert torch.equal(nearest, idx[..., level].reshape(-1)), level
        counts = torch.bincount(nearest, minlength=c).float()
        sums = torch.zeros(c, d).index_add_(0, nearest, residual)
        size = cluster_size[level] * decay + counts * (1 - decay)
        avg = embed_avg[level] * decay + sums * (1 - decay)
        smoothed = (size + eps) / (size.sum() + c * eps) * size.sum()
        want_embed.append(avg / smoothed[:, None])
        want_size.append(size)
        residual = residual - embed[level][nearest]
    torch.testing.assert_close(rvq.codebooks, torch.stack(want_embed))
    torch.testing.assert_close(rvq._codebook.cluster_size, torch.stack(want_size))
    assert bool(rvq._codebook.initted)


def test_dead_code_threshold_zero_never_replaces_a_code_without_assignments():
    decay, steps = 0.8, 10

    def train(threshold):
        vq = ResidualVQ(
            dim=4,
            num_quantizers=1,
            codebook_size=8,
            decay=decay,
            threshold_ema_dead_code=threshold,
        ).train()
        embed = torch.randn(1, 8, 4, generator=torch.Generator().manual_seed(0))
        embed[0, 7] = 100.0  # far from every input: code 7 is never the nearest
        size = torch.full((1, 8), 10.0)
        size[0, 7] = 0.5
        load_codebook_state(vq, embed=embed, embed_avg=embed * size[..., None], cluster_size=size)
        g = torch.Generator().manual_seed(1)
        assigned, revived = False, 0.0
        for _ in range(steps):
            _, idx, _ = vq(torch.randn(4, 16, 4, generator=g))
            assigned |= bool((idx == 7).any())
            revived += float(vq.telemetry()["revived"].sum())
        return vq, assigned, revived

    vq, assigned, revived = train(threshold=0)
    assert not assigned and revived == 0
    # only the EMA's decay touched code 7: no batch vector replaced it
    torch.testing.assert_close(vq._codebook.embed_avg[0, 7], torch.full((4,), 50.0 * decay**steps))
    torch.testing.assert_close(vq._codebook.cluster_size[0, 7], torch.tensor(0.5 * decay**steps))
    assert vq._codebook.embed[0, 7].min() > 99

    # the same run with a threshold does replace it: the code really was dead
    vq, _, revived = train(threshold=2)
    assert revived >= 1 and vq._codebook.embed[0, 7].abs().max() < 50
