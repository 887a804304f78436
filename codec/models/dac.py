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

Hugging Face transformers' `DacModel` folders (config.json with model_type "dac" and
model.safetensors, weight norm removed or kept as parametrizations) are read by renaming their
tensors to DAC's (`encoder.conv1` -> `encoder.block.0`, `encoder.block.I.res_unitJ` ->
`encoder.block.I+1.block.J-1`, `decoder.block.I.conv_t1` -> `decoder.model.I+1.block.1`, ...)
and writing a plain weight w as weight norm's (g = |w| per output, v = w), which gives w back.
transformers' `DacModel.encode` does not pad the input to a multiple of the hop as DAC does;
the imported model does (so the codes agree on inputs of whole hops).

The quantizer becomes a factorized GRVQ (one group, learnable codebooks, commitment 0.25,
codebook 1, per-item dropout p = 0.5 as DAC was trained); the decoder keeps DAC 1.0's lengths
(no output_padding: 320 f - 8 samples at 16 and 24 kHz, padded with zeros by the Codec).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from codec.models.checkpoints import (
    CheckpointError,
    read_safetensors,
    read_torch_file,
    tensor_dict,
)
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


def is_hf_dac_folder(folder: Path) -> bool:
    """Whether `folder` holds a transformers DacModel (config.json's model_type is "dac")."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(config, dict) and config.get("model_type") == "dac"


def _hf_name(key: str) -> str | None:
    """A transformers DacModel tensor name -> DAC's (None: not one of the model's)."""
    rules = [
        (r"^encoder\.conv1\.", "encoder.block.0."),
        (r"^decoder\.conv1\.", "decoder.model.0."),
    ]
    for pattern, replacement in rules:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    unit = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}
    match = re.match(r"^(encoder|decoder)\.block\.(\d+)\.(.+)$", key)
    if match:
        side, index, rest = match.group(1), int(match.group(2)) + 1, match.group(3)
        parent = "encoder.block" if side == "encoder" else "decoder.model"
        res = re.match(r"^res_unit(\d)\.(snake1|conv1|snake2|conv2)\.(.+)$", rest)
        if res:
            j = int(res.group(1)) - 1 + (0 if side == "encoder" else 2)
            return f"{parent}.{index}.block.{j}.block.{unit[res.group(2)]}.{res.group(3)}"
        own = {"snake1": 3, "conv1": 4} if side == "encoder" else {"snake1": 0, "conv_t1": 1}
        layer, _, leaf = rest.partition(".")
        if layer in own:
            return f"{parent}.{index}.block.{own[layer]}.{leaf}"
        return None
    if key.startswith("quantizer."):
        return key
    return key  # the encoder's and decoder's last Snake and conv: placed below


def _weight_norm_pair(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight_g, weight_v) of old-style weight norm (dim 0) that give `weight` back."""
    dims = tuple(range(1, weight.ndim))
    return weight.norm(dim=dims, keepdim=True), weight


def read_hf_folder(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A transformers DacModel folder -> (state dict under DAC's names, metadata kwargs)."""
    config_path, weights = folder / "config.json", folder / "model.safetensors"
    for path in (config_path, weights):
        if not path.is_file():
            raise CheckpointError(f"{folder}: not a Hugging Face DAC folder (no {path.name})")
    try:
        config = json.loads(config_path.read_text())
        if not isinstance(config, dict) or config.get("model_type") != "dac":
            raise ValueError("model_type is not dac")
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_path}: not a DAC config ({err})") from None
    hf = tensor_dict(read_safetensors(weights), weights)
    blocks = {
        side: len({int(m.group(1)) for k in hf if (m := re.match(rf"^{side}\.block\.(\d+)\.", k))})
        for side in ("encoder", "decoder")
    }
    tails = {  # the last Snake and conv of each side
        "encoder.snake1.": f"encoder.block.{blocks['encoder'] + 1}.",
        "encoder.conv2.": f"encoder.block.{blocks['encoder'] + 2}.",
        "decoder.snake1.": f"decoder.model.{blocks['decoder'] + 1}.",
        "decoder.conv2.": f"decoder.model.{blocks['decoder'] + 2}.",
    }
    state: dict[str, torch.Tensor] = {}
    for key, tensor in hf.items():
        name = next((key.replace(a, b, 1) for a, b in tails.items() if key.startswith(a)), None)
        name = name or _hf_name(key)
        if name is None:
            raise CheckpointError(f"{weights}: unknown DAC tensor {key}")
        name = name.replace(".parametrizations.weight.original0", ".weight_g")
        name = name.replace(".parametrizations.weight.original1", ".weight_v")
        if name.endswith(".weight") and not name.endswith("codebook.weight"):
            g, v = _weight_norm_pair(tensor)
            (
                state[name[: -len("weight")] + "weight_g"],
                state[name[: -len("weight")] + "weight_v"],
            ) = g, v
        else:
            state[name] = tensor
    kwargs = {"sample_rate": config.get("sampling_rate")}
    return state, {k: v for k, v in kwargs.items() if v is not None}


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


_LEVEL_TENSORS = {  # the quantizer's name of a level's tensor: DAC's within quantizers.L
    "in_proj.weight_v": "in_proj.weight_v",
    "in_proj.weight_g": "in_proj.weight_g",
    "in_proj.bias": "in_proj.bias",
    "out_proj.weight_v": "out_proj.weight_v",
    "out_proj.weight_g": "out_proj.weight_g",
    "out_proj.bias": "out_proj.bias",
    "codebook": "codebook.weight",
}


def _quantizer_tensors(state: dict, model: Codec, path: Path) -> dict[str, torch.Tensor]:
    """DAC's per-level projections and codebooks -> the quantizer's state (one group)."""
    shapes = model.quantizer.level_shapes()
    levels = {}
    for name, leaf in _LEVEL_TENSORS.items():
        levels[name] = []
        for level in range(model.levels):
            key = f"quantizer.quantizers.{level}.{leaf}"
            tensor = _tensor(state, key, path)
            if tensor.ndim == 3 and tensor.shape[-1] == 1:  # a 1x1 conv's (out, in, 1)
                tensor = tensor[..., 0]
            if tuple(tensor.shape) != shapes[name]:
                raise CheckpointError(
                    f"{path}: {key} has shape {list(state[key].shape)}, "
                    f"expected {list(shapes[name])} (+ a trailing 1 for conv weights)"
                )
            levels[name].append(tensor[None])
    levels["codebook_avg"] = levels["codebook"]  # learned codebooks: no EMA of their own
    quantizer = model.quantizer.state_from_levels(levels)
    return {f"quantizer.{key}": tensor for key, tensor in quantizer.items()}


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
            if name.endswith("_extra_state"):
                out[name] = tensor
                continue
            raise CheckpointError(f"{path}: missing DAC tensor {_dac_name(name)}")
    return out


def import_dac(source, kind: str | None = None, data=None) -> Codec:
    """A DAC `.pth` file or a transformers DacModel folder -> Codec (weight norm kept,
    train-ready). `kind` (dac_16khz, dac_24khz, dac_44khz) defaults to the file name's;
    `data`: the file's contents if already read."""
    path = Path(source)
    state, kwargs = read_hf_folder(path) if path.is_dir() else read_pth(path, data)
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
