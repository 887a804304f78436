"""The CPU inference conversion of DAC's encoder and decoder: converted copies run time-major
end to end (residual units, transposed convs, blocks) and equal the plain path within 1e-4, for
lengths that are and are not multiples of the hop, odd and even rates; a whole imported DAC
Codec loaded for inference gives the plain model's codes; the chunked Snake equals `snake`
bit for bit; folded weights are Parameters whose layouts are cached."""

import copy

import pytest
import torch

from codec.models import Codec
from codec.models.dac import dac_config
from codec.nn import fold_weight_norm, for_cpu_inference, inference
from codec.nn.activations import Snake, snake
from codec.nn.dac import DACDecoder, DACEncoder, DACResidualUnit, DACTransposedConv
from codec.nn.inference import (
    TimeMajorDACResidualUnit,
    TimeMajorDACTransposedConv,
    TimeMajorSequential,
    TimeMajorSnake,
    time_major,
)

# (encoder rates, decoder rates, output_padding): DAC 1.0's odd rate (decoder short by 2
# samples a frame at hop 10), an even one, and the later versions' output padding
CASES = [([2, 5], [5, 2], False), ([2, 4], [4, 2], False), ([2, 5], [5, 2], True)]


def _randomise_(module: torch.nn.Module, seed: int) -> None:
    """Snake alphas in [0.5, 2], biases ~0.1, weight-norm magnitudes apart from their
    directions' norms (x 0.7: the residual sums stay near 1 in size, so 1e-4 is float rounding)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.endswith("alpha"):
                param.copy_(0.5 + 1.5 * torch.rand(param.shape, generator=generator))
            elif name.endswith("bias"):
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
            elif name.endswith("original0"):  # weight norm's magnitude g
                param.copy_(0.7 * (0.5 + torch.rand(param.shape, generator=generator)))


def _pair(module: torch.nn.Module, seed: int = 0):
    """(plain, converted) copies of `module`, randomised, eval mode, weight norm folded."""
    _randomise_(module, seed)
    plain = fold_weight_norm(module.eval())
    return plain, for_cpu_inference(copy.deepcopy(plain).requires_grad_(False))


@pytest.mark.parametrize("enc_rates, dec_rates, output_padding", CASES)
def test_converted_dac_encoder_and_decoder_equal_the_plain_ones(
    enc_rates, dec_rates, output_padding
):
    encoder, fast_encoder = _pair(DACEncoder(1, 16, 8, enc_rates))
    decoder, fast_decoder = _pair(DACDecoder(1, 16, 32, dec_rates, output_padding), seed=1)
    hop = encoder.hop_length
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for batch, length in ((1, hop * 40), (2, hop * 40 + 3), (2, hop - 1), (1, 1)):
            wav = 0.3 * torch.randn(batch, 1, length, generator=generator)
            latents = encoder(wav)
            assert latents.shape == (batch, 16, -(-length // hop))
            torch.testing.assert_close(fast_encoder(wav), latents, atol=1e-4, rtol=0)
            audio = decoder(latents)
            assert audio.shape[-1] == decoder.output_length(latents.shape[-1])
            if length > hop:  # not a comparison of near-zero values
                assert latents.abs().max() > 0.5 and audio.std() > 0.05
            torch.testing.assert_close(fast_decoder(latents), audio, atol=1e-4, rtol=0)


def test_every_dac_layer_runs_time_major():
    """The conversion reaches every DAC layer, so the equality above is of the fast path."""
    _, encoder = _pair(DACEncoder(1, 16, 8, [2, 5]))
    _, decoder = _pair(DACDecoder(1, 16, 32, [5, 2]))
    assert type(encoder.block) is TimeMajorSequential
    assert type(decoder.model) is TimeMajorSequential
    for model in (encoder, decoder):
        for layer in model.modules():
            if isinstance(layer, DACResidualUnit):
                assert type(layer) is TimeMajorDACResidualUnit
            if isinstance(layer, DACTransposedConv):
                assert type(layer) is TimeMajorDACTransposedConv
            if isinstance(layer, Snake):
                assert type(layer) is TimeMajorSnake
    # and the residual unit's own time-major path equals its plain one
    unit = decoder.model[1].block[2]
    x = torch.randn(2, unit.block[0].alpha.shape[1], 50, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fast = unit(time_major(x))
        assert fast.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(fast.squeeze(2), unit(x), atol=1e-5, rtol=0)


SMALL_DAC = {
    "encoder_dim": 8,
    "encoder_rates": [2, 5],
    "latent_dim": 16,
    "decoder_dim": 32,
    "decoder_rates": [5, 2],
    "n_codebooks": 4,
    "codebook_size": 32,
    "codebook_dim": 8,
}


def test_a_dac_codec_loaded_for_inference_gives_the_plain_models_codes(tmp_path):
    torch.manual_seed(0)
    model = Codec(dac_config(SMALL_DAC, 16000, "dac", tmp_path / "dac_16khz.pth")).eval()
    _randomise_(model, seed=3)
    loaded = Codec.from_pretrained(model.save_pretrained(tmp_path / "model"))
    assert type(loaded.encoder.block) is TimeMajorSequential
    generator = torch.Generator().manual_seed(4)
    for length in (model.hop_length * 30, model.hop_length * 30 + 7):
        wav = 0.3 * torch.randn(2, 1, length, generator=generator)
        codes = model.encode(wav)
        assert torch.equal(loaded.encode(wav), codes)
        torch.testing.assert_close(loaded.decode(codes), model.decode(codes), atol=1e-4, rtol=0)


@pytest.mark.parametrize("inplace", [False, True])
def test_chunked_snake_equals_snake_bit_for_bit(monkeypatch, inplace):
    """Chunks of 3 rows (of 5 channels) over 2 x 7 rows: a partial last chunk, and chunks
    across the batch boundary."""
    monkeypatch.setattr(inference, "SNAKE_CHUNK", 15)
    layer = Snake(5)
    layer.__class__, layer._layouts = TimeMajorSnake, inference.LayoutCache()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        layer.alpha.copy_(0.5 + torch.rand(1, 5, 1, generator=generator))
        x = torch.randn(2, 5, 7, generator=generator)
        expected = snake(x, layer.alpha)
        tm = time_major(x)
        out = layer.apply_(tm) if inplace else layer(tm)
    assert (out is tm) == inplace
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out.squeeze(2), expected)
    if not inplace:
        assert torch.equal(tm.squeeze(2), x)  # the input is left as it was


def test_folded_weights_are_parameters_whose_layouts_are_cached():
    """Folding after requires_grad_(False), as loading for inference does, keeps each weight
    a Parameter (weight-norm removal alone leaves a buffer), so the converted conv lays its
    weight out once, not on every call."""
    encoder = DACEncoder(1, 16, 8, [2, 4]).eval().requires_grad_(False)
    fold_weight_norm(encoder)
    conv = encoder.block[1].block[0].block[1]  # a residual unit's dilated conv
    assert isinstance(conv.conv.weight, torch.nn.Parameter)
    assert not conv.conv.weight.requires_grad
    for_cpu_inference(encoder)
    with torch.no_grad():
        encoder(torch.randn(1, 1, 64))
        cached = dict(conv._layouts._entries)
        encoder(torch.randn(1, 1, 64))
    assert cached and all(conv._layouts._entries[k][1] is v[1] for k, v in cached.items())
