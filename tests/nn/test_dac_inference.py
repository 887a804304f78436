"""The CPU inference conversion leaves DAC's encoder and decoder on their plain path (ONNX
Runtime is within 10% of hand-written DAC kernels: docs/performance.md): no list of theirs runs
time-major, converted copies equal the plain ones for lengths that are and are not multiples
of the hop, odd and even rates; a whole imported DAC Codec loaded for inference gives the
plain model's codes; folding keeps weights Parameters."""

import copy

import pytest
import torch

from codec.models import Codec
from codec.models.dac import dac_config
from codec.nn import fold_weight_norm, for_cpu_inference
from codec.nn.dac import DACDecoder, DACEncoder
from codec.nn.inference import TimeMajorSequential

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


def test_no_dac_list_runs_time_major():
    """Every DAC list holds Snake or a DAC block, which are not converted: a time-major list
    would convert layouts at each of them, slower than the plain path."""
    for model in (DACEncoder(1, 16, 8, [2, 5]), DACDecoder(1, 16, 32, [5, 2])):
        _, fast = _pair(model)
        assert not any(isinstance(m, TimeMajorSequential) for m in fast.modules())


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
    assert type(loaded.encoder.block) is torch.nn.Sequential
    generator = torch.Generator().manual_seed(4)
    for length in (model.hop_length * 30, model.hop_length * 30 + 7):
        wav = 0.3 * torch.randn(2, 1, length, generator=generator)
        codes = model.encode(wav)
        assert torch.equal(loaded.encode(wav), codes)
        torch.testing.assert_close(loaded.decode(codes), model.decode(codes), atol=1e-4, rtol=0)


def test_folded_weights_are_parameters():
    """Folding after requires_grad_(False), as loading for inference does, keeps each weight
    a Parameter (weight-norm removal alone leaves a buffer)."""
    encoder = DACEncoder(1, 16, 8, [2, 4]).eval().requires_grad_(False)
    fold_weight_norm(encoder)
    conv = encoder.block[1].block[0].block[1]  # a residual unit's dilated conv
    assert isinstance(conv.conv.weight, torch.nn.Parameter)
    assert not conv.conv.weight.requires_grad
