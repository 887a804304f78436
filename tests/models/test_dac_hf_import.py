"""transformers' DacModel folders import (`codec import FOLDER`): codes and audio equal to
transformers' own model, with every tensor random (weight norms, Snake alphas, biases,
codebooks), with weight norm removed or kept."""

import pytest
import torch
from references import reference

from codec.models.importing import import_checkpoint, sniff_format

transformers = reference("transformers")


def _hf_dac(keep_weight_norm: bool, seed: int = 0):
    config = transformers.DacConfig(
        encoder_hidden_size=8,
        downsampling_ratios=[2, 5],
        decoder_hidden_size=16,
        hidden_size=16,
        n_codebooks=4,
        codebook_size=32,
        codebook_dim=8,
        sampling_rate=16000,
    )
    torch.manual_seed(seed)
    model = transformers.DacModel(config).eval()
    if keep_weight_norm:
        model.apply_weight_norm()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith("alpha"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator) * 1.5)
            elif name.endswith("original0"):  # weight norm magnitudes, not the norms of v
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith("bias"):
                tensor.copy_(noise * 0.1)
            elif tensor.ndim == 3:  # conv weights: O(1) activations, where fp32 stays at 1e-6
                tensor.copy_(noise / tensor[0].numel() ** 0.5)
            else:  # codebooks
                tensor.copy_(noise)
    return model


@pytest.mark.parametrize("keep_weight_norm", [False, True])
def test_a_transformers_dac_folder_imports_number_for_number(keep_weight_norm, tmp_path):
    reference = _hf_dac(keep_weight_norm)
    reference.save_pretrained(tmp_path / "hf")
    assert sniff_format(tmp_path / "hf")[0] == "dac-hf"
    model = import_checkpoint(tmp_path / "hf").eval()
    assert (model.sample_rate, model.hop_length, model.levels) == (16000, 10, 4)
    torch.manual_seed(1)
    wav = torch.randn(2, 1, 10 * 37) * 0.3  # whole hops: transformers' encode does not pad
    with torch.no_grad():
        theirs = reference.encode(wav)
        ours = model.encode(wav)
        assert torch.equal(ours[:, 0], theirs.audio_codes)
        audio = reference.decode(audio_codes=theirs.audio_codes).audio_values
        decoded = model.decode(ours)
        exact = reference.double().decode(audio_codes=theirs.audio_codes).audio_values
    length = audio.shape[-1]  # DAC 1.0's decoder: fewer samples with odd rates
    # ours is as near transformers' float64 decoding as its own float32 one is: a fixed bound
    # between the two float32 ones fails on some CPUs' kernels (1.2e-4 on AVX2, where the
    # reference's own float32 error is 1.6e-4); a mapping error is orders of magnitude larger
    ours_error = (decoded[:, 0, :length].double() - exact).abs().max()
    their_error = (audio.double() - exact).abs().max()
    assert ours_error <= 2 * their_error + 1e-6, (float(ours_error), float(their_error))
    assert decoded.shape[-1] == ours.shape[-1] * 10


def test_a_folder_of_another_model_type_is_one_line(tmp_path):
    from codec.models.checkpoints import CheckpointError
    from codec.models.dac import read_hf_folder

    (tmp_path / "config.json").write_text('{"model_type": "whisper"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a DAC config"):
        read_hf_folder(tmp_path)
