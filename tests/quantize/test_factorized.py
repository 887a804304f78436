"""Factorized residual VQ (DAC's quantizer) as an option of the GRVQ engine: per level a
projection to a small space with bias, search by L2-normalised distance, the raw code projected
back, residuals in the full dimension; against DAC's own ResidualVectorQuantize where the
reference is installed (see tests/models/dac_reference.py), and on its own for training,
dropout and telemetry."""

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from codec.models.config import CodecConfig
from codec.models.options import ConfigError
from codec.quantize import GroupedResidualVQ


def factorized(**kw):
    opts = dict(
        dim=32,
        groups=2,
        num_quantizers=4,
        codebook_size=16,
        codebook_dim=4,
        factorized=True,
        learnable_codebook=True,
        commitment_weight=0.25,
        codebook_weight=1.0,
    )
    opts.update(kw)
    torch.manual_seed(0)
    return GroupedResidualVQ(**opts)


def randomize_(quantizer):
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in quantizer.named_parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * (0.1 if "bias" in name else 1))
            if name.endswith("_g"):
                p.abs_().add_(0.5)
    return quantizer


# -- against DAC -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dac_quantizers(dac_reference):
    """Two DAC ResidualVectorQuantize (16 dims, 4 levels, 32 codes of 8 dims), random, one per
    group of ours, and our two-group quantizer holding the same numbers."""
    dac_reference.load_dac()
    from dac.nn.quantize import ResidualVectorQuantize

    torch.manual_seed(2)
    references = [ResidualVectorQuantize(16, 4, 32, 8).eval() for _ in range(2)]
    ours = factorized(dim=32, codebook_size=32, codebook_dim=8).eval()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for group, reference in enumerate(references):
            for level, vq in enumerate(reference.quantizers):
                for name, tensor in vq.state_dict().items():
                    value = torch.randn(tensor.shape, generator=generator)
                    if name.endswith("weight_g"):
                        value = value.abs() + 0.5
                    tensor.copy_(value)
                p = ours._projections
                p.in_v[level, group] = vq.in_proj.weight_v[..., 0]
                p.in_g[level, group] = vq.in_proj.weight_g[..., 0]
                p.in_bias[level, group] = vq.in_proj.bias
                p.out_v[level, group] = vq.out_proj.weight_v[..., 0]
                p.out_g[level, group] = vq.out_proj.weight_g[..., 0]
                p.out_bias[level, group] = vq.out_proj.bias
                ours._codebook.embed[level * 2 + group] = vq.codebook.weight
    return references, ours


@pytest.mark.parametrize("levels", [1, 2, 4])
def test_codes_and_output_equal_dacs_per_group(dac_quantizers, levels):
    references, ours = dac_quantizers
    x = torch.randn(3, 20, 32, generator=torch.Generator().manual_seed(levels))
    with torch.no_grad():
        out, indices, losses = ours(x, num_levels=levels)
        decoded = ours.get_output_from_indices(indices[..., :levels])
        for group, reference in enumerate(references):
            z = x[..., group * 16 : (group + 1) * 16].transpose(1, 2)
            z_q, codes, *_ = reference(z, n_quantizers=levels)
            assert torch.equal(indices[group, ..., :levels], codes.transpose(1, 2))
            assert (indices[group, ..., levels:] == -1).all()
            part = out[..., group * 16 : (group + 1) * 16]
            torch.testing.assert_close(part, z_q.transpose(1, 2), atol=1e-5, rtol=0)
            from_codes, _, _ = reference.from_codes(codes)
            torch.testing.assert_close(
                decoded[..., group * 16 : (group + 1) * 16],
                from_codes.transpose(1, 2),
                atol=1e-5,
                rtol=0,
            )
    assert not losses.any()  # eval


def test_training_losses_are_dacs_commitment_and_codebook_terms(dac_quantizers):
    """Without dropout each level's loss is 0.25 * DAC's commitment + 1 * its codebook loss,
    and the codebook gets its gradient only from the codebook term."""
    references, ours = dac_quantizers
    x = torch.randn(2, 10, 32, generator=torch.Generator().manual_seed(5))
    ours.train()
    ours.options.quantize_dropout = False
    try:
        _, _, losses = ours(x)
    finally:
        ours.options.quantize_dropout = True
        ours.eval()
    for group, reference in enumerate(references):
        residual = x[..., group * 16 : (group + 1) * 16].transpose(1, 2)
        for level, vq in enumerate(reference.quantizers):
            z_q, commitment, codebook, _, _ = vq(residual)
            expected = 0.25 * commitment.mean() + codebook.mean()
            torch.testing.assert_close(losses[group, level], expected, atol=1e-5, rtol=1e-5)
            residual = residual - z_q


# -- on its own ------------------------------------------------------------------------------


def test_the_search_is_normalised_and_the_output_raw():
    """Scaling codes by positive factors keeps every index (the search compares directions)
    but changes the output (the raw code is dequantised: unlike use_cosine_sim, which would
    return the normalised vector)."""
    q = randomize_(factorized()).eval()
    x = torch.randn(2, 12, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, indices, _ = q(x)
        q._codebook.embed.mul_(torch.rand(q._codebook.embed.shape[:2])[..., None] * 3 + 0.5)
        scaled, same, _ = q(x)
    assert torch.equal(indices[..., 0], same[..., 0])  # later levels see other residuals
    assert not torch.allclose(out, scaled, atol=1e-3)


@pytest.mark.parametrize("shared", [False, True])
def test_eval_forward_equals_decoding_from_indices_at_every_depth(shared):
    q = randomize_(factorized(shared_codebook=shared)).eval()
    x = torch.randn(2, 9, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for levels in (1, 3, 4):
            out, indices, _ = q(x, num_levels=levels)
            assert (indices[..., levels:] == -1).all()
            torch.testing.assert_close(q.get_output_from_indices(indices), out, atol=1e-5, rtol=0)
            short = q.get_output_from_indices(indices[..., :levels])
            torch.testing.assert_close(short, out, atol=1e-5, rtol=0)


@pytest.mark.parametrize("input_grad", [True, False])
def test_gradients_reach_projections_codebooks_and_the_input(input_grad):
    """Also for input that needs no gradient (a quantizer trained on fixed features)."""
    q = randomize_(factorized())
    q.train()
    x = torch.randn(2, 8, 32, requires_grad=input_grad)
    out, _, losses = q(x)
    (out.pow(2).mean() + losses.sum()).backward()
    for name, p in q.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not input_grad or x.grad.abs().sum() > 0


def test_ema_codebooks_learn_from_the_projected_vectors():
    """learnable_codebook off: k-means on the first step, then EMA; losses are commitment only."""
    q = factorized(learnable_codebook=False, kmeans_init=True, kmeans_iters=3, decay=0.5)
    q.train()
    x = torch.randn(4, 16, 32)
    assert not bool(q._codebook.initted)
    q(x)
    first = q._codebook.embed.clone()
    assert bool(q._codebook.initted) and torch.isfinite(first).all() and first.abs().sum() > 0
    _, _, losses = q(x, freeze_codebook=True)
    assert torch.equal(q._codebook.embed, first)
    q(x)
    assert not torch.equal(q._codebook.embed, first)
    with torch.no_grad():
        z_e = q._projections.project_in(0, rearrange(x, "b n (g d) -> g (b n) d", g=2))
        idx = q._codebook.search(z_e, slice(0, 2))
        for group in range(2):
            expected = 0.25 * F.mse_loss(z_e[group], first[group][idx[group]])
            torch.testing.assert_close(losses[group, 0], expected, atol=1e-5, rtol=1e-4)


def test_per_item_dropout_and_telemetry_apply():
    """Items past their drawn depth get -1 and add nothing; the training output equals the
    decoding of the codes; telemetry counts only the levels that ran."""
    q = randomize_(factorized(quantize_dropout=True, quantize_dropout_per_item=True))
    q.train()
    x = torch.randn(8, 6, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out, indices, losses = q(x)
    depths = (indices[0, :, 0, :] >= 0).sum(-1)
    assert depths.min() < 4 and (indices[0] >= 0).all(-1).any()  # some items dropped, some not
    assert torch.equal((indices[0] >= 0).sum(-1), depths[:, None].expand(-1, 6))
    torch.testing.assert_close(q.get_output_from_indices(indices), out, atol=1e-5, rtol=0)
    telemetry = q.telemetry()
    ran = int(depths.max())
    assert torch.isfinite(telemetry["usage"][:, :ran]).all()
    assert torch.isnan(telemetry["usage"][:, ran:]).all()
    assert (losses[:, ran:] == 0).all() and (losses[:, :ran] > 0).all()


def test_structured_dropout_cuts_every_group_at_one_depth():
    q = randomize_(factorized(quantize_dropout=True))
    q.train()
    x = torch.randn(2, 5, 32)
    depths = set()
    for seed in range(12):
        with torch.no_grad():
            _, indices, losses = q(x, rand_quantize_dropout_fixed_seed=seed)
        depth = int((indices[0, 0, 0] >= 0).sum())
        assert (indices[..., :depth] >= 0).all() and (indices[..., depth:] == -1).all()
        assert (losses[:, depth:] == 0).all()
        depths.add(depth)
    assert len(depths) > 1


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="codebook_dim"):
        factorized(codebook_dim=None)
    with pytest.raises(ValueError, match="use_cosine_sim"):
        factorized(use_cosine_sim=True)
    q = factorized()
    with pytest.raises(ValueError, match="factorized"):
        q(torch.randn(1, 3, 32), indices=torch.zeros(2, 1, 3, 4, dtype=torch.long))
    base = {"encoder": {"name": "seanet"}, "decoder": {"name": "seanet"}}
    with pytest.raises(ConfigError, match="codebook_dim"):
        CodecConfig.from_dict(base | {"quantizer": {"name": "grvq", "factorized": True}})
    with pytest.raises(ConfigError, match="rotation_trick"):
        CodecConfig.from_dict(
            base
            | {
                "quantizer": {
                    "name": "grvq",
                    "factorized": True,
                    "codebook_dim": 8,
                    "rotation_trick": True,
                }
            }
        )


def test_an_importer_fills_the_levels_by_name_and_shape():
    q = factorized(dim=32, codebook_size=16, codebook_dim=4)
    shapes = q.level_shapes()
    assert shapes["codebook"] == (16, 4) and shapes["in_proj.weight_v"] == (4, 16)
    levels = {name: [torch.randn(2, *shape) for _ in range(4)] for name, shape in shapes.items()}
    state = q.state_from_levels(levels, initialised=True)
    q.load_state_dict(state)
    codebooks = q.level_codebooks()  # (g, q, c, k): level 3's codebook of group 1
    assert torch.equal(codebooks[1, 3], levels["codebook"][3][1])
    assert torch.equal(q._projections.in_v[2, 0], levels["in_proj.weight_v"][2][0])
    with pytest.raises(ValueError, match="no quantizer tensor is called embed"):
        q.state_from_levels({"embed": levels["codebook"]})
    with pytest.raises(ValueError, match=r"codebook: expected 4 tensors of \(2, 16, 4\)"):
        q.state_from_levels({"codebook": levels["codebook"][:3]})
