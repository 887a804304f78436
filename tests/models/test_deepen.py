"""Deepening a trained SEANet (more residual units per stage) keeps what it computes, and the
new units learn."""

import pytest
import torch

from codec.audio import read_for
from codec.train.solver import with_changes

DEEPER = {"encoder": {"n_residual_layers": 3}, "decoder": {"n_residual_layers": 2}}


def trained_looking(model):
    """`model` with every parameter and buffer moved off its initial value (weight-norm gains
    no longer the norms of their directions, biases non-zero), so that a layer copied to the
    wrong place shows."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.1 * torch.randn(tensor.shape, generator=generator))
    return model.eval()


@pytest.mark.parametrize("true_skip", [False, True])
def test_a_deepened_model_codes_and_decodes_real_speech_as_before(fsdd_root, tiny_codec, true_skip):
    model = trained_looking(tiny_codec(true_skip=true_skip))
    deeper = with_changes(model, DEEPER, "tiny").eval()
    assert sum(p.numel() for p in deeper.parameters()) > sum(p.numel() for p in model.parameters())
    assert deeper.config.part("encoder")[1].n_residual_layers == 3
    wav = read_for(sorted(fsdd_root.glob("*.wav"))[0], model.sample_rate, 1)[None]
    with torch.no_grad():
        codes = model.encode(wav)
        assert torch.equal(deeper.encode(wav), codes)
        torch.testing.assert_close(deeper.decode(codes), model.decode(codes), rtol=0, atol=1e-6)
        latents = model.encoder(wav)
        assert latents.abs().max() > 0.1  # not a trivial identity
        torch.testing.assert_close(deeper.encoder(wav), latents, rtol=0, atol=1e-6)


def test_the_new_units_learn(fsdd_root, tiny_codec):
    model = trained_looking(tiny_codec())
    deeper = with_changes(model, {"decoder": {"n_residual_layers": 2}}, "tiny").train()
    new_unit = [m for m in deeper.decoder.model if type(m).__name__ == "ResidualUnit"][1]
    gain = new_unit.block[-1].conv.parametrizations.weight.original0
    assert torch.count_nonzero(gain) == 0
    wav = read_for(sorted(fsdd_root.glob("*.wav"))[1], model.sample_rate, 1)[None]
    deeper.decoder(deeper.encoder(wav)).pow(2).mean().backward()
    assert gain.grad is not None and gain.grad.abs().sum() > 0


def test_other_architecture_changes_are_refused_with_the_source_named(tiny_codec):
    model = tiny_codec()
    with pytest.raises(ValueError, match="change the architecture of saved/tiny"):
        with_changes(model, {"decoder": {"n_filters": 8}}, "saved/tiny")
    with pytest.raises(ValueError, match="change the architecture of saved/tiny"):
        with_changes(model, {"encoder": {"n_residual_layers": 2, "lstm": 2}}, "saved/tiny")
