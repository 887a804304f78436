"""Deepening a trained SEANet (more residual units per stage) keeps what it computes to within
the new units' small start, and the new units learn."""

import pytest
import torch

from codec.audio import read_for
from codec.models.deepen import START_GAIN
from codec.models.finetune import with_changes

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


def new_units(seanet):
    """The residual units a deepening added: every one after a stage's first."""
    layers = list(seanet.model)
    return [
        layer
        for before, layer in zip(layers, layers[1:])
        if type(layer).__name__ == type(before).__name__ == "ResidualUnit"
    ]


@pytest.mark.parametrize("true_skip", [False, True])
def test_a_deepened_model_codes_and_decodes_real_speech_almost_as_before(
    fsdd_root, tiny_codec, true_skip
):
    model = trained_looking(tiny_codec(true_skip=true_skip))
    deeper = with_changes(model, DEEPER, "tiny").eval()
    assert len(new_units(deeper.encoder)) == 2 * len(deeper.encoder.ratios)
    assert len(new_units(deeper.decoder)) == len(deeper.decoder.ratios)
    assert deeper.config.part("encoder")[1].n_residual_layers == 3
    wav = read_for(sorted(fsdd_root.glob("*.wav"))[0], model.sample_rate, 1)[None]
    with torch.no_grad():
        codes = model.encode(wav)
        assert (deeper.encode(wav) == codes).float().mean() > 0.95
        audio = model.decode(codes)
        assert (deeper.decode(codes) - audio).abs().max() < 0.01 * audio.abs().max()
        latents = model.encoder(wav)
        assert (deeper.encoder(wav) - latents).abs().max() < 0.01 * latents.abs().max()
        # the old layers are where they were: the new units' start is all that differs
        for unit in new_units(deeper.encoder) + new_units(deeper.decoder):
            unit.block[-1].conv.parametrizations.weight.original0.zero_()
        assert torch.equal(deeper.encode(wav), codes)
        torch.testing.assert_close(deeper.decode(codes), audio, rtol=0, atol=1e-6)


def test_the_new_units_learn(fsdd_root, tiny_codec):
    model = trained_looking(tiny_codec())
    deeper = with_changes(model, {"decoder": {"n_residual_layers": 2}}, "tiny").train()
    out = new_units(deeper.decoder)[0].block[-1].conv.parametrizations.weight
    assert torch.allclose(out.original0, torch.tensor(START_GAIN))
    wav = read_for(sorted(fsdd_root.glob("*.wav"))[1], model.sample_rate, 1)[None]
    deeper.decoder(deeper.encoder(wav)).pow(2).mean().backward()
    assert out.original0.grad.abs().sum() > 0
    assert out.original1.grad.abs().sum() > 0  # a zero gain would leave the direction still


def test_other_architecture_changes_are_refused_with_the_source_named(tiny_codec):
    model = tiny_codec()
    with pytest.raises(ValueError, match="change the architecture of saved/tiny"):
        with_changes(model, {"decoder": {"n_filters": 8}}, "saved/tiny")
    with pytest.raises(ValueError, match="change the architecture of saved/tiny"):
        with_changes(model, {"encoder": {"n_residual_layers": 2, "lstm": 2}}, "saved/tiny")
