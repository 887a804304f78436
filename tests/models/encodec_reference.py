"""EnCodec reference models with random weights, for tests of the EnCodec importer and readers.

`random_encodec` builds an `encodec.EncodecModel` (the pip package, version 0.1.1) at full size
or in a small configuration of the same architecture, then overwrites every parameter and
buffer with seeded random values, so that a converter which drops, transposes or misnames a
tensor gives different outputs: weight-norm magnitudes differ from the norms of their
directions, biases and GroupNorm affine terms are non-trivial, and the codebooks (embed,
embed_avg, cluster_size) are random, at a scale that gives varied codes, and marked
initialised.

`save_th` writes the model the way EnCodec's .th checkpoints are stored (a plain state dict);
`reference_encode` / `reference_decode` give the reference codes and audio.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

NAMES = {24000: "encodec_24khz", 48000: "encodec_48khz"}

# The small configuration: same classes and norm / causal / padding settings as the full
# models, narrower and with hop 32 instead of 320.
SMALL = {"n_filters": 4, "ratios": [8, 4], "dimension": 16, "n_q": 8, "bins": 64, "lstm": 2}

# The randomised encoders give latents of about 0.2 to 0.6 std; codebooks of that scale give
# varied codes at every level (at std 1 the first level of the small 24 kHz model picks one
# code, the one of smallest norm, for every frame).
CODEBOOK_STD = 0.3


def random_encodec(sample_rate: int = 24000, small: bool = True, seed: int = 0):
    """An `encodec.EncodecModel` in eval mode with every tensor random (see randomize_encodec_).

    sample_rate 24000: mono, causal, weight norm, one segment. 48000: stereo, non-causal,
    GroupNorm, 1 s segments with 1% overlap, each segment normalised. `model.name` is set to
    encodec_24khz / encodec_48khz so that `encodec.compress` accepts it (the package's own
    constructors leave it "unset" when pretrained=False); a small model's .ecdc files use its
    own bits per code (6 for 64 bins), so only full-size models write .ecdc files that
    EnCodec's real models would read."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _small_encodec(sample_rate) if small else _full_encodec(sample_rate)
    randomize_encodec_(model, seed)
    return model.eval()


def _full_encodec(sample_rate: int):
    from encodec import EncodecModel

    if sample_rate == 24000:
        model = EncodecModel.encodec_model_24khz(pretrained=False)
    elif sample_rate == 48000:
        model = EncodecModel.encodec_model_48khz(pretrained=False)
    else:
        raise ValueError(f"EnCodec models are 24000 or 48000 Hz, not {sample_rate}")
    model.name = NAMES[sample_rate]
    return model


def _small_encodec(sample_rate: int):
    # The same arguments EncodecModel._get_model passes, with the small sizes.
    from encodec import EncodecModel
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    if sample_rate not in NAMES:
        raise ValueError(f"EnCodec models are 24000 or 48000 Hz, not {sample_rate}")
    stereo = sample_rate == 48000
    seanet = {
        "channels": 2 if stereo else 1,
        "dimension": SMALL["dimension"],
        "n_filters": SMALL["n_filters"],
        "ratios": SMALL["ratios"],
        "norm": "time_group_norm" if stereo else "weight_norm",
        "causal": not stereo,
        "lstm": SMALL["lstm"],
    }
    encoder = SEANetEncoder(**seanet)
    decoder = SEANetDecoder(**seanet)
    quantizer = ResidualVectorQuantizer(
        dimension=SMALL["dimension"], n_q=SMALL["n_q"], bins=SMALL["bins"]
    )
    frame_rate = math.ceil(sample_rate / encoder.hop_length)
    kbps_per_codebook = math.log2(SMALL["bins"]) * frame_rate / 1000
    bandwidths = [kbps_per_codebook * n for n in (1, 2, 4, SMALL["n_q"])]
    return EncodecModel(
        encoder,
        decoder,
        quantizer,
        bandwidths,
        sample_rate,
        seanet["channels"],
        normalize=stereo,
        segment=1.0 if stereo else None,
        name=NAMES[sample_rate],
    )


@torch.no_grad()
def randomize_encodec_(model, seed: int = 0):
    """Overwrite every parameter and buffer of an EncodecModel with seeded random values, in
    place; returns the model. Raises ValueError on a tensor it has no rule for, so that a new
    kind of tensor cannot stay at its default unnoticed."""
    generator = torch.Generator().manual_seed(seed)

    def randn(shape):
        return torch.randn(shape, generator=generator)

    def uniform(shape, low, high):
        return low + (high - low) * torch.rand(shape, generator=generator)

    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "weight_g":  # one magnitude per output channel, unrelated to |v|
            value = uniform(tensor.shape, 0.5, 1.5)
        elif leaf == "weight_v":
            value = randn(tensor.shape)
        elif ".lstm." in name:  # PyTorch's LSTM init range; every tensor is (4 * hidden, ...)
            bound = 1 / math.sqrt(tensor.shape[0] // 4)
            value = uniform(tensor.shape, -bound, bound)
        elif name.endswith("norm.weight"):  # GroupNorm scale
            value = uniform(tensor.shape, 0.5, 1.5)
        elif name.endswith("norm.bias") or leaf == "bias":
            value = 0.1 * randn(tensor.shape)
        elif leaf == "weight":  # plain conv weights of the GroupNorm model
            fan_in = tensor[0].numel() if ".convtr." not in name else tensor[:, 0].numel()
            value = randn(tensor.shape) / math.sqrt(fan_in)
        elif leaf in ("embed", "embed_avg"):
            value = CODEBOOK_STD * randn(tensor.shape)
        elif leaf == "cluster_size":
            value = uniform(tensor.shape, 0.5, 10.0)
        elif leaf == "inited":
            value = torch.ones(tensor.shape)
        else:
            raise ValueError(f"randomize_encodec_ has no rule for tensor {name}")
        tensor.copy_(value.to(tensor.dtype))
    return model


def save_th(model, path) -> Path:
    """Write the model as EnCodec's .th checkpoints are stored: torch.save of the state dict."""
    path = Path(path)
    torch.save(model.state_dict(), path)
    return path


@torch.no_grad()
def reference_encode(model, wav: torch.Tensor, bandwidth: float | None = None):
    """EnCodec's frames for `wav` (channels, time) or (batch, channels, time) at `bandwidth`
    kbps (None: all codebooks): a list of (codes int64 (batch, codebooks, frames), scale
    (batch, 1) or None), one per segment. The model's own bandwidth setting is restored."""
    if wav.dim() == 2:
        wav = wav[None]
    previous = model.bandwidth
    try:
        if bandwidth is not None:
            model.set_target_bandwidth(bandwidth)
        return model.encode(wav)
    finally:
        model.bandwidth = previous


@torch.no_grad()
def reference_decode(model, frames, length: int | None = None) -> torch.Tensor:
    """EnCodec's audio (batch, channels, time) for `frames` as reference_encode returns them;
    cut to `length` samples when given (the decoder can give a little more than was encoded)."""
    wav = model.decode(frames)
    return wav if length is None else wav[..., :length]
