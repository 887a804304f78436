"""DAC's encoder and decoder as Codec parts: lengths (the hop padding, DAC 1.0's short decoder
output and the Codec's zero tail), residual units, Snake, the shipped configs, training."""

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from codec.models import Codec
from codec.models.config import CodecConfig
from codec.models.options import ConfigError
from codec.nn import DACDecoder, DACEncoder
from codec.nn.activations import snake
from codec.nn.dac import DACResidualUnit

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "model"


def small_codec(rates=(2, 5), output_padding=False, quantizer=None) -> Codec:
    torch.manual_seed(0)
    quantizer = quantizer or {"name": "grvq", "levels": 3, "codebook_size": 16}
    return Codec(
        CodecConfig.from_dict(
            {
                "sample_rate": 16000,
                "dimension": 16,
                "encoder": {"name": "dac", "n_filters": 4, "rates": list(rates)},
                "decoder": {
                    "name": "dac",
                    "n_filters": 16,
                    "rates": list(reversed(rates)),
                    "output_padding": output_padding,
                },
                "quantizer": {"kmeans_init": False} | quantizer,
            }
        )
    )


@pytest.mark.parametrize(
    "rates, frames, expected",
    [([8, 5, 4, 2], 3, 320 * 3 - 8), ([8, 8, 4, 2], 3, 512 * 3), ([5, 2], 7, 10 * 7 - 2)],
)
def test_the_decoder_gives_dacs_lengths(rates, frames, expected):
    """DAC 1.0: an odd rate s gives s f - 1 samples (320 f - 8 for the 16 and 24 kHz models);
    with output_padding, exactly f * hop."""
    decoder = DACDecoder(dimension=4, n_filters=16, rates=rates)
    with torch.no_grad():
        assert decoder(torch.randn(1, 4, frames)).shape[-1] == expected
        assert decoder.output_length(frames) == expected
        padded = DACDecoder(dimension=4, n_filters=16, rates=rates, output_padding=True)
        assert padded(torch.randn(1, 4, frames)).shape[-1] == frames * decoder.hop_length


def test_the_encoder_right_pads_to_the_hop_with_zeros():
    encoder = DACEncoder(dimension=8, n_filters=4, rates=[2, 5]).eval()
    x = torch.randn(2, 1, 43)
    with torch.no_grad():
        latents = encoder(x)
        assert latents.shape == (2, 8, 5)
        padded = torch.cat([x, torch.zeros(2, 1, 7)], -1)
        assert torch.equal(encoder(padded), latents)


def test_the_codec_pads_a_short_decoder_output_with_zeros():
    """Codes of f frames decode to f * hop samples whatever the decoder gives; the samples DAC
    1.0's decoder does not give are zeros, also when asked for by `length`."""
    model = small_codec().eval()
    wav = torch.randn(2, 1, 95)
    codes = model.encode(wav)
    frames = codes.shape[-1]
    assert frames == 10
    decoded = model.decode(codes)
    given = model.decoder.output_length(frames)
    assert decoded.shape == (2, 1, 100) and given == 98
    assert not decoded[..., given:].any() and decoded[..., :given].abs().sum() > 0
    assert torch.equal(model.decode(codes, length=100), decoded)
    assert model(wav)["audio"].shape == wav.shape
    exact = small_codec(output_padding=True).eval()
    assert exact.decode(exact.encode(wav))[..., given:].abs().sum() > 0


def test_a_residual_unit_crops_its_input_to_a_shorter_output():
    """DAC crops the skip path when the block shortens the signal (it never does with "same"
    padding; kept as DAC has it)."""
    unit = DACResidualUnit(3, dilation=1)
    unit.block = nn.Conv1d(3, 3, 5)  # valid conv: 4 samples shorter
    x = torch.randn(1, 3, 20)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), x[..., 2:-2] + unit.block(x))


def test_snake_without_autograd_equals_the_plain_expression_bit_for_bit():
    x = torch.randn(3, 8, 500)
    alpha = (torch.rand(1, 8, 1) + 0.2).requires_grad_()
    plain = x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)
    with torch.no_grad():
        fast = snake(x, alpha)
    assert torch.equal(fast, plain.detach())
    assert torch.equal(snake(x, alpha), plain)  # with autograd: the plain expression
    assert snake(x, alpha).requires_grad and fast.data_ptr() != x.data_ptr()


def test_the_shipped_configs_build_and_train_a_step():
    """configs/model/{encoder,decoder}/dac.yaml and quantizer/factorized.yaml (narrowed for
    speed) give a codec whose training step reaches every part."""
    parts = {
        kind: yaml.safe_load((CONFIGS / kind / f"{name}.yaml").read_text())
        for kind, name in [("encoder", "dac"), ("decoder", "dac"), ("quantizer", "factorized")]
    }
    assert parts["encoder"]["name"] == parts["decoder"]["name"] == "dac"
    assert parts["quantizer"]["factorized"] and parts["quantizer"]["codebook_dim"] == 8
    parts["encoder"]["n_filters"] = 2
    parts["decoder"]["n_filters"] = 32
    parts["quantizer"] |= {"levels": 3, "codebook_size": 16}
    torch.manual_seed(0)
    model = Codec(CodecConfig.from_dict({"sample_rate": 44100, "dimension": 16, **parts}))
    assert model.hop_length == 512
    model.train()
    wav = torch.randn(2, 1, 2000) * 0.3
    out = model(wav)
    ((out["audio"] - wav).abs().mean() + out["commitment"]).backward()
    for name in ("encoder.block.0.conv.parametrizations.weight.original1", "decoder.model.1"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name)]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), name
    assert model.quantizer._codebook.embed.grad.abs().sum() > 0


def test_mismatched_or_bad_dac_options_are_refused():
    with pytest.raises(ValueError, match="decoder upsamples by 8"):
        Codec(
            CodecConfig.from_dict(
                {
                    "dimension": 16,
                    "encoder": {"name": "dac", "n_filters": 4, "rates": [2, 5]},
                    "decoder": {"name": "dac", "n_filters": 16, "rates": [4, 2]},
                    "quantizer": {"name": "grvq", "levels": 2, "codebook_size": 4},
                }
            )
        )
    dac = {"encoder": {"name": "dac"}, "decoder": {"name": "dac"}}
    with pytest.raises(ConfigError, match="decoder.n_filters"):
        CodecConfig.from_dict(dac | {"decoder": {"name": "dac", "n_filters": 6, "rates": [2, 2]}})
    with pytest.raises(ConfigError, match="encoder.rates"):
        CodecConfig.from_dict(dac | {"encoder": {"name": "dac", "rates": [0]}})


def test_the_dac16k_model_config_is_what_importing_dac_16khz_gives():
    """Hydra's model=dac16k (the groups encoder/decoder=dac, quantizer=factorized) composes to
    the config the importer builds from a DAC 16 kHz checkpoint's architecture."""
    from omegaconf import OmegaConf

    from codec.models.dac import DAC_16KHZ, dac_config
    from codec.train.config import compose_config

    cfg = compose_config(["model=dac16k"])
    trained = CodecConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))
    imported = dac_config(DAC_16KHZ, 16000, "dac16k", Path("dac_16khz.pth"))
    assert trained.to_dict() == imported.to_dict()
