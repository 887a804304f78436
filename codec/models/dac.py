"""DAC checkpoints (Descript Audio Codec 1.0) as Codec models, number for number.

A DAC `.pth` file is `{"state_dict": {...}, "metadata": {"kwargs": {...}}}`, read with
`torch.load(weights_only=True)` (never as a torch.package, which carries code). The architecture
comes from the tensors' shapes (encoder_dim, rates, latent_dim, decoder_dim, codebooks), checked
against the metadata's kwargs where they are given; the sample rate from the kwargs, else the
file's name (dac_16khz, dac_24khz, dac_44khz), else DAC's default 44.1 kHz.

    encoder.block.0.weight_g|weight_v|bias                 first conv (old-style weight norm)
    encoder.block.I.block.J.block.{0,2}.alpha, .{1,3}.*     residual units (Snake alpha (1, C, 1))
    encoder.block.I.block.{3.alpha, 4.*}                    Snake, strided conv k=2s
    quantizer.quantizers.L.{in_proj,out_proj}.*, .codebook.weight
    decoder.model.I.block.{0.alpha, 1.*, 2..4}              Snake, transposed conv, residual units

The quantizer becomes a factorized GRVQ (one group, learnable codebooks, commitment 0.25,
codebook 1, per-item dropout p = 0.5 as DAC was trained); the decoder keeps DAC 1.0's lengths
(no output_padding: 320 f - 8 samples at 16 and 24 kHz, padded with zeros by the Codec).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from codec.models.checkpoints import CheckpointError, read_torch_file, tensor_dict
from codec.models.codec import Codec
from codec.models.config import CodecConfig
from codec.models.options import ConfigError

RATES = {"dac_16khz": 16_000, "dac_24khz": 24_000, "dac_44khz": 44_100}
DAC_16KHZ = {  # the published 16 kHz model's architecture (its metadata kwargs)
    "encoder_dim": 64,
    "encoder_rates": [2, 4, 5, 8],
    "latent_dim": 1024,
    "decoder_dim": 1536,
    "decoder_rates": [8, 5, 4, 2],
    "n_codebooks": 12,
    "codebook_size": 1024,
    "codebook_dim": 8,
}
QUANTIZER = {  # how DAC's quantizer was trained
    "learnable_codebook": True,
    "ema_update": False,
    "kmeans_init": False,
    "threshold_ema_dead_code": 0.0,
    "commitment_weight": 0.25,
    "codebook_weight": 1.0,
    "quantize_dropout": True,
    "quantize_dropout_per_item": True,
    "quantize_dropout_prob": 0.5,
}


def kind_of_file(path: Path) -> str | None:
    """dac_16khz.pth -> dac_16khz."""
    return next((kind for kind in RATES if path.name.startswith(kind)), None)


def is_dac_checkpoint(data) -> bool:
    """Whether loaded file contents look like DAC's {"state_dict", "metadata"}."""
    return isinstance(data, dict) and "state_dict" in data and "metadata" in data


def read_pth(path: Path, data=None) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, metadata kwargs) of a DAC file (`data`: its contents, if already read)."""
    data = read_torch_file(path) if data is None else data
    if not is_dac_checkpoint(data):
        raise CheckpointError(f"{path}: not a DAC checkpoint (no state_dict and metadata)")
    state = tensor_dict(data["state_dict"], path)
    metadata = data["metadata"]
    kwargs = metadata.get("kwargs", {}) if isinstance(metadata, dict) else None
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{path}: DAC metadata.kwargs is not a mapping")
    return state, kwargs


# -- architecture from shapes ----------------------------------------------------------------


def _tensor(state: dict, key: str, path: Path) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"{path}: missing DAC tensor {key}")
    return state[key]


def _indices(state: dict, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.match(pattern, k))})


def dac_architecture(state: dict, path: Path) -> dict:
    """DAC's constructor arguments, as its tensors' shapes give them."""
    blocks = _indices(state, r"^encoder\.block\.(\d+)\.block\.")
    up = _indices(state, r"^decoder\.model\.(\d+)\.block\.")
    levels = _indices(state, r"^quantizer\.quantizers\.(\d+)\.")
    if not blocks or not up or not levels:
        raise CheckpointError(
            f"{path}: not a DAC state dict (no encoder blocks, decoder blocks or quantizers)"
        )
    last = max(_indices(state, r"^encoder\.block\.(\d+)\.weight_v$"), default=0)
    codebook = _tensor(state, f"quantizer.quantizers.{levels[0]}.codebook.weight", path)
    return {
        "encoder_dim": _tensor(state, "encoder.block.0.weight_v", path).shape[0],
        "encoder_rates": [
            _tensor(state, f"encoder.block.{i}.block.4.weight_v", path).shape[-1] // 2
            for i in blocks
        ],
        "latent_dim": _tensor(state, f"encoder.block.{last}.weight_v", path).shape[0],
        "decoder_dim": _tensor(state, "decoder.model.0.weight_v", path).shape[0],
        "decoder_rates": [
            _tensor(state, f"decoder.model.{i}.block.1.weight_v", path).shape[-1] // 2 for i in up
        ],
        "n_codebooks": len(levels),
        "codebook_size": codebook.shape[0],
        "codebook_dim": codebook.shape[1],
    }


def _check_kwargs(arch: dict, kwargs: dict, path: Path) -> None:
    """Every architecture kwarg the metadata gives must agree with the shapes."""
    for key, value in arch.items():
        given = kwargs.get(key)
        if given is None:
            continue
        if isinstance(given, (list, tuple)) and key == "codebook_dim":
            given = given[0] if len(set(given)) == 1 else given
        if isinstance(given, (list, tuple)):
            given = list(given)
        if given != value:
            raise CheckpointError(
                f"{path}: metadata kwargs {key}={given!r} disagrees with the tensors ({value!r})"
            )


def dac_config(arch: dict, sample_rate: int, model_id: str, path: Path) -> CodecConfig:
    try:
        return CodecConfig.from_dict(
            {
                "sample_rate": sample_rate,
                "channels": 1,
                "dimension": arch["latent_dim"],
                "encoder": {
                    "name": "dac",
                    "n_filters": arch["encoder_dim"],
                    "rates": arch["encoder_rates"],
                },
                "decoder": {
                    "name": "dac",
                    "n_filters": arch["decoder_dim"],
                    "rates": arch["decoder_rates"],
                    "output_padding": False,
                },
                "quantizer": {
                    "name": "grvq",
                    "factorized": True,
                    "groups": 1,
                    "levels": arch["n_codebooks"],
                    "codebook_size": arch["codebook_size"],
                    "codebook_dim": arch["codebook_dim"],
                }
                | QUANTIZER,
                "model_id": model_id,
            }
        )
    except ConfigError as err:
        raise CheckpointError(f"{path}: unsupported DAC architecture ({err})") from None


# -- weights ---------------------------------------------------------------------------------

_WEIGHT_NORM = {
    "weight_g": "parametrizations.weight.original0",
    "weight_v": "parametrizations.weight.original1",
}


def _our_conv_name(key: str, ours: dict) -> str | None:
    """encoder.block.0.weight_g -> encoder.block.0.conv.parametrizations.weight.original0;
    a transposed conv's bias stays where it is (our ConvTranspose1d owns it)."""
    module, _, leaf = key.rpartition(".")
    if leaf == "alpha":
        return key if key in ours else None
    if leaf not in ("weight_g", "weight_v", "bias"):
        return None
    for wrapper in ("conv", "convtr"):
        name = f"{module}.{wrapper}.{_WEIGHT_NORM.get(leaf, leaf)}"
        if name in ours:
            return name
    if leaf == "bias" and f"{module}.convtr.parametrizations.weight.original0" in ours:
        return key
    return None


def _dac_name(name: str) -> str:
    """Our name -> DAC's: X.conv.parametrizations.weight.original0 -> X.weight_g, ..."""
    for leaf, ours in _WEIGHT_NORM.items():
        name = name.replace(f".{ours}", f".{leaf}")
    return name.replace(".conv.", ".").replace(".convtr.", ".")


def _quantizer_tensors(state: dict, model: Codec, path: Path) -> dict[str, torch.Tensor]:
    """DAC's per-level projections and codebooks -> our stacked ones (one group)."""
    ours = model.state_dict()
    stacks = {  # our name: DAC's name within quantizers.L
        "quantizer._projections.in_v": "in_proj.weight_v",
        "quantizer._projections.in_g": "in_proj.weight_g",
        "quantizer._projections.in_bias": "in_proj.bias",
        "quantizer._projections.out_v": "out_proj.weight_v",
        "quantizer._projections.out_g": "out_proj.weight_g",
        "quantizer._projections.out_bias": "out_proj.bias",
        "quantizer._codebook.embed": "codebook.weight",
    }
    out = {}
    for name, leaf in stacks.items():
        target = ours[name]
        levels = []
        for level in range(model.levels):
            key = f"quantizer.quantizers.{level}.{leaf}"
            tensor = _tensor(state, key, path)
            if tensor.ndim == 3 and tensor.shape[-1] == 1:  # a 1x1 conv's (out, in, 1)
                tensor = tensor[..., 0]
            want = target.shape[1:] if name.endswith("embed") else target.shape[2:]
            if tuple(tensor.shape) != tuple(want):
                raise CheckpointError(
                    f"{path}: {key} has shape {list(state[key].shape)}, "
                    f"expected {list(want)} (+ a trailing 1 for conv weights)"
                )
            levels.append(tensor)
        stacked = torch.stack(levels).to(target.dtype)
        out[name] = stacked if name.endswith("embed") else stacked[:, None]
    out["quantizer._codebook.embed_avg"] = out["quantizer._codebook.embed"].clone()
    out["quantizer._codebook.initted"] = torch.tensor(True)
    return out


def dac_state(state: dict, model: Codec, path: Path) -> dict[str, torch.Tensor]:
    """DAC tensors -> `model`'s state dict; the first unknown, misshapen or missing key is
    named."""
    ours = model.state_dict()
    out = _quantizer_tensors(state, model, path)
    level_keys = re.compile(
        r"^quantizer\.quantizers\.(\d+)\.(?:(?:in|out)_proj\.(?:weight_g|weight_v|bias)"
        r"|codebook\.weight)$"
    )
    for key, tensor in state.items():
        if key.startswith("quantizer."):
            match = level_keys.match(key)
            if match is None or int(match.group(1)) >= model.levels:
                raise CheckpointError(f"{path}: unknown DAC tensor {key}")
            continue
        name = _our_conv_name(key, ours)
        if name is None:
            raise CheckpointError(f"{path}: unknown DAC tensor {key}")
        if tuple(tensor.shape) != tuple(ours[name].shape):
            raise CheckpointError(
                f"{path}: {key} has shape {list(tensor.shape)}, expected {list(ours[name].shape)}"
            )
        out[name] = tensor.to(ours[name].dtype)
    for name, tensor in ours.items():
        if name not in out:
            if name.endswith("_extra_state") or name == "quantizer._codebook.cluster_size":
                out[name] = tensor
                continue
            raise CheckpointError(f"{path}: missing DAC tensor {_dac_name(name)}")
    return out


def import_dac(source, kind: str | None = None, data=None) -> Codec:
    """A DAC `.pth` file -> Codec (weight norm kept, train-ready). `kind` (dac_16khz, dac_24khz,
    dac_44khz) defaults to the file name's; `data`: the file's contents if already read."""
    path = Path(source)
    state, kwargs = read_pth(path, data)
    kind = kind or kind_of_file(path)
    if kind is not None and kind not in RATES:
        raise CheckpointError(f"{path}: unknown DAC kind {kind!r} ({', '.join(RATES)})")
    arch = dac_architecture(state, path)
    _check_kwargs(arch, kwargs, path)
    sample_rate = kwargs.get("sample_rate") or RATES.get(kind, 44_100)
    config = dac_config(arch, sample_rate, kind or "dac", path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the quantizer's RNG seed: the same file imports to the same folder
        model = Codec(config)
    model.load_state_dict(dac_state(state, model, path))
    return model
