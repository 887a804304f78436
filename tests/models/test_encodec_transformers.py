"""transformers' EncodecModel as a second reference: a model with every tensor random, saved
with its own `save_pretrained` (config.json + model.safetensors), imports to its codes and
audio. The 24 kHz design only: for the segmented 48 kHz design transformers pads the last
chunk to a whole second, which the original package (the authority, tested in
test_encodec_import.py) does not, so their codes differ there by design."""

import math

import torch
from references import reference

from codec.models.encodec import import_encodec

transformers = reference("transformers")

# hop 32 at 24 kHz: 750 frames/s, 64 codes (6 bits) -> 4.5 kbps a level
BANDWIDTHS = [4.5, 9.0, 18.0, 36.0, 60.0]


def random_hf_encodec(seed: int):
    config = transformers.EncodecConfig(
        target_bandwidths=BANDWIDTHS,
        sampling_rate=24000,
        audio_channels=1,
        normalize=False,
        chunk_length_s=None,
        overlap=None,
        hidden_size=16,
        num_filters=4,
        upsampling_ratios=[8, 4],
        codebook_size=64,
        use_causal_conv=True,
        norm_type="weight_norm",
    )
    model = transformers.EncodecModel(config).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(".inited"):
                tensor.fill_(1)
            elif name.endswith(".cluster_size"):
                tensor.uniform_(0.5, 10.0, generator=generator)
            elif name.endswith((".embed", ".embed_avg")):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.3)
            elif name.endswith("original0"):  # weight norm's g, unlike |v|
                tensor.uniform_(0.5, 1.5, generator=generator)
            elif tensor.ndim > 1:
                fan_in = math.prod(tensor.shape[1:])
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / fan_in**0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return model


def test_a_transformers_folder_imports_to_its_codes_and_audio(tmp_path):
    reference = random_hf_encodec(seed=5)
    reference.save_pretrained(tmp_path)
    model = import_encodec(tmp_path, kind="encodec_24khz").eval()
    assert model.levels == len(reference.quantizer.layers) and model.codebook_size == 64
    assert model.causal
    generator = torch.Generator().manual_seed(6)
    for length in (32 * 50, 32 * 50 + 13, 150):
        wav = torch.randn(1, 1, length, generator=generator) * 0.3
        for bandwidth in (4.5, 18.0, 36.0):  # bandwidth=None would mean the smallest there
            with torch.no_grad():
                out = reference.encode(wav, bandwidth=bandwidth)
                expected = reference.decode(out.audio_codes, out.audio_scales).audio_values
            codes = model.encode(wav, bandwidth=bandwidth)
            assert torch.equal(codes[:, 0], out.audio_codes[0]), (length, bandwidth)
            decoded = model.decode(codes, length)
            torch.testing.assert_close(decoded, expected[..., :length], atol=1e-4, rtol=0)
