"""DAC reference models with random weights, for tests of the DAC importer.

The reference is descript-audio-codec 1.0.0 (`make test` runs `pip install --no-deps
descript-audio-codec==1.0.0`). Its `dac` package imports descript-audiotools at import time,
and that package's dependency tree pins protobuf < 3.20 (and brings librosa, numba, ipython,
tensorboard, ...), which would break this environment; so audiotools is NOT installed.
`load_dac` instead imports only the modules the model needs (dac.nn.layers, dac.nn.quantize,
dac.model.base, dac.model.dac) under stand-ins for the `dac`, `dac.model` and `dac.nn`
packages (whose __init__ files pull in the rest: losses, discriminators, the CLI) and for
`audiotools`, whose AudioSignal is used only by DAC's file compression (not by encode/decode)
and whose BaseModel (save/load) is replaced by torch.nn.Module. The model code that runs is
DAC's own. Tests using it are skipped where the package is not installed.

`random_dac` overwrites every tensor with seeded random values (weight-norm magnitudes apart
from their directions' norms, biases, Snake alphas, codebooks); `save_pth` writes it as DAC
saves its .pth files, {"state_dict", "metadata": {"kwargs"}}.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import torch
from references import missing
from torch import nn

# The small configuration of the task: hop 8, 4 levels of 32 codes of 8 dims.
SMALL = {
    "encoder_dim": 8,
    "encoder_rates": [2, 4],
    "latent_dim": 16,
    "decoder_dim": 16,
    "decoder_rates": [4, 2],
    "n_codebooks": 4,
    "codebook_size": 32,
    "codebook_dim": 8,
    "sample_rate": 16000,
}
# Odd rates, as DAC's 16 and 24 kHz models have: the decoder gives fewer samples than f * hop.
ODD = SMALL | {"encoder_rates": [2, 5], "decoder_rates": [5, 2]}


def _stand_in(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def load_dac():
    """DAC's model class (dac.model.dac.DAC), or skip the test where the package is missing."""
    if "dac.model.dac" in sys.modules:
        return sys.modules["dac.model.dac"].DAC
    spec = importlib.util.find_spec("dac")
    if spec is None or not spec.submodule_search_locations:
        missing("no DAC reference: pip install --no-deps descript-audio-codec==1.0.0")
    root = Path(spec.submodule_search_locations[0])
    if not (root / "model" / "dac.py").is_file():
        missing("the installed `dac` package is not descript-audio-codec")
    if importlib.util.find_spec("audiotools") is None:
        ml = _stand_in("audiotools.ml", BaseModel=nn.Module)
        sys.modules["audiotools"] = _stand_in("audiotools", AudioSignal=object, ml=ml)
        sys.modules["audiotools.ml"] = ml
    sys.modules.setdefault("dac", _stand_in("dac", __path__=[str(root)]))
    for package in ("model", "nn"):
        name = f"dac.{package}"
        sys.modules.setdefault(name, _stand_in(name, __path__=[str(root / package)]))
    return importlib.import_module("dac.model.dac").DAC


@torch.no_grad()
def random_dac(config: dict = SMALL, seed: int = 0, gain: float = 1.0):
    """A DAC model in eval mode with every tensor random; `model.kwargs` its constructor's.
    `gain` scales the weight-norm magnitudes: below 1 it keeps a full-size model's activations
    small, where fp32 rounding of the large ones would exceed the tests' 1e-4 (DAC's own fp32
    output is then that far from its fp64 one)."""
    dac_class = load_dac()
    model = dac_class(**config).eval()
    model.kwargs = dict(config)
    generator = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    last_conv = [k for k in state if k.startswith("decoder.") and k.endswith("weight_g")][-1]
    for name, tensor in state.items():
        noise = torch.randn(tensor.shape, generator=generator)
        if name.endswith("alpha"):
            value = 0.5 + torch.rand(tensor.shape, generator=generator) * 1.5
        elif name.endswith("weight_g"):
            value = (0.5 + torch.rand(tensor.shape, generator=generator)) * gain  # != |v|
            if name == last_conv:  # keeps the output off tanh's rails (~0.3 std, not +-1)
                value = value * 0.05
        elif name.endswith("bias"):
            value = noise * 0.1
        else:  # weight_v and codebooks
            value = noise
        tensor.copy_(value)
    return model


def save_pth(model, path: Path) -> Path:
    """As DAC saves: {"state_dict": ..., "metadata": {"kwargs": ...}}."""
    torch.save({"state_dict": model.state_dict(), "metadata": {"kwargs": model.kwargs}}, path)
    return path


@torch.no_grad()
def reference_encode(model, wav: torch.Tensor, n_quantizers: int | None = None):
    """DAC's codes (b, levels, frames) of wav (b, 1, t), preprocessed (padded to the hop) as
    DAC's forward does; n_quantizers levels are run and returned."""
    padded = model.preprocess(wav, model.sample_rate)
    _, codes, *_ = model.encode(padded, n_quantizers)
    return codes[:, : n_quantizers or model.n_codebooks]


@torch.no_grad()
def reference_decode(model, codes: torch.Tensor) -> torch.Tensor:
    """DAC's audio from codes (b, levels, frames): (b, 1, decoder output length)."""
    z, _, _ = model.quantizer.from_codes(codes)
    return model.decode(z)
