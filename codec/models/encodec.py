"""EnCodec checkpoints as Codec models, number for number.

Reads the original `.th` files (plain state dicts: `encoder.model.N.conv.conv.weight_g`, ...)
and Hugging Face `EncodecModel` folders (config.json + model.safetensors, either weight-norm
spelling). The architecture is read off the tensors' shapes (filters, ratios, kernels, LSTM
layers, codebooks), the rest from the model kind:

    encodec_24khz  mono, causal, weight norm, reflect padding, one segment
    encodec_48khz  stereo, non-causal, GroupNorm(1, C) after every conv, 1 s segments with 1%
                   overlap, each divided by its RMS (the scale is kept with the codes)

Codebooks keep EnCodec's EMA statistics and count as initialised, so fine-tuning continues them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from codec.models.checkpoints import CheckpointError, read_safetensors, read_torch_file, tensor_dict
from codec.models.codec import Codec
from codec.models.config import CodecConfig
from codec.models.options import ConfigError

KINDS = {
    "encodec_24khz": {"sample_rate": 24_000, "causal": True, "segment": None},
    "encodec_48khz": {
        "sample_rate": 48_000,
        "causal": False,
        "segment": {"seconds": 1.0, "overlap": 0.01, "normalize": True},
    },
}
CODEBOOK = {  # EnCodec's EuclideanCodebook settings
    "decay": 0.99,
    "eps": 1e-5,
    "kmeans_init": True,
    "kmeans_iters": 50,
    "threshold_ema_dead_code": 2.0,
    "quantize_dropout": True,
}


def kind_of_file(path: Path) -> str | None:
    """encodec_24khz-d7cc33bc.th -> encodec_24khz."""
    for kind in KINDS:
        if path.name.startswith(kind):
            return kind
    return None


# -- reading ---------------------------------------------------------------------------------


def read_th(path: Path) -> dict[str, torch.Tensor]:
    state = tensor_dict(read_torch_file(path), path)
    if not any(k.startswith("encoder.model.") for k in state):
        raise CheckpointError(f"{path}: not an EnCodec state dict (no encoder.model.* tensors)")
    return state


def _hf_to_original(key: str, transposed: set[int]) -> str:
    """A transformers EncodecModel key -> the original package's name for it."""
    key = key.replace(".parametrizations.weight.original0", ".weight_g")
    key = key.replace(".parametrizations.weight.original1", ".weight_v")
    key = re.sub(
        r"^quantizer\.layers\.(\d+)\.codebook\.", r"quantizer.vq.layers.\1._codebook.", key
    )
    match = re.match(r"^(encoder|decoder)\.layers\.(\d+)\.(.*)$", key)
    if not match:
        return key
    part, index, rest = match.group(1), int(match.group(2)), match.group(3)
    if part == "decoder" and index in transposed:
        rest = re.sub(r"^conv\.", "convtr.convtr.", rest)
        rest = re.sub(r"^norm\.", "convtr.norm.", rest)
    else:
        rest = re.sub(r"(^|\.)conv\.", r"\1conv.conv.", rest)
        rest = re.sub(r"(^|(?:block\.\d+|shortcut)\.)norm\.", r"\1conv.norm.", rest)
    return f"{part}.model.{index}.{rest}"


def read_hf_folder(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict under the original names, settings from config.json)."""
    config_path = folder / "config.json"
    weights = folder / "model.safetensors"
    for path in (config_path, weights):
        if not path.is_file():
            raise CheckpointError(f"{folder}: not a Hugging Face EnCodec folder (no {path.name})")
    try:
        hf = json.loads(config_path.read_text())
        if not isinstance(hf, dict) or hf.get("model_type", "encodec") != "encodec":
            raise ValueError("model_type is not encodec")
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_path}: not an EnCodec config ({err})") from None
    state = tensor_dict(read_safetensors(weights), weights)
    # decoder convs outside residual blocks, but the first and the last, are transposed
    tops = {
        int(m.group(1)) for k in state if (m := re.match(r"^decoder\.layers\.(\d+)\.conv\.", k))
    }
    transposed = set(sorted(tops)[1:-1])
    state = {_hf_to_original(k, transposed): v for k, v in state.items()}
    segment = None
    if hf.get("chunk_length_s"):
        segment = {
            "seconds": float(hf["chunk_length_s"]),
            "overlap": float(hf.get("overlap") or 0.0),
            "normalize": bool(hf.get("normalize", False)),
        }
    settings = {
        "sample_rate": hf.get("sampling_rate"),
        "causal": hf.get("use_causal_conv"),
        "segment": segment,
        "pad_mode": hf.get("pad_mode", "reflect"),
        "dilation_base": hf.get("dilation_growth_rate", 2),
    }
    return state, settings


# -- architecture from shapes ----------------------------------------------------------------


def _conv_weight(state: dict, prefix: str, path: Path) -> torch.Tensor:
    for suffix in ("conv.conv.weight_v", "conv.conv.weight", "convtr.convtr.weight_v"):
        if prefix + suffix in state:
            return state[prefix + suffix]
    missing = prefix + ("conv.conv.weight_v" if prefix + "conv.conv.weight_g" in state else "conv")
    raise CheckpointError(f"{path}: missing EnCodec tensor {missing}")


def _indices(state: dict, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state if (m := re.match(pattern, k))})


def encodec_config(state: dict, path: Path, kind: str, settings: dict) -> CodecConfig:
    """The CodecConfig of an EnCodec state dict (original names)."""
    tops = _indices(state, r"^encoder\.model\.(\d+)\.conv\.conv\.")
    blocks = _indices(state, r"^encoder\.model\.(\d+)\.block\.")
    lstm = _indices(state, r"^encoder\.model\.\d+\.lstm\.weight_ih_l(\d+)$")
    levels = _indices(state, r"^quantizer\.vq\.layers\.(\d+)\._codebook\.embed$")
    if len(tops) < 3 or not levels:
        raise CheckpointError(f"{path}: not an EnCodec state dict (too few layers or codebooks)")
    first = _conv_weight(state, f"encoder.model.{tops[0]}.", path)
    last = _conv_weight(state, f"encoder.model.{tops[-1]}.", path)
    downsampling = [_conv_weight(state, f"encoder.model.{i}.", path) for i in tops[1:-1]]
    ratios = [w.shape[-1] // 2 for w in reversed(downsampling)]
    if blocks:
        hidden = _conv_weight(state, f"encoder.model.{blocks[0]}.block.1.", path)
        dim = _conv_weight(state, f"encoder.model.{blocks[0]}.block.3.", path)
        residual_kernel, compress = hidden.shape[-1], max(1, dim.shape[0] // hidden.shape[0])
    else:
        residual_kernel, compress = 3, 2
    if any(".norm.weight" in k for k in state):
        norm = "time_group_norm"
    elif any(k.endswith(".weight_g") for k in state):
        norm = "weight_norm"
    else:
        norm = "none"
    embed = state[f"quantizer.vq.layers.{levels[0]}._codebook.embed"]
    base = KINDS[kind]
    seanet = {
        "name": "seanet",
        "n_filters": first.shape[0],
        "ratios": ratios,
        "n_residual_layers": len(blocks) // max(1, len(ratios)),
        "kernel_size": first.shape[-1],
        "residual_kernel_size": residual_kernel,
        "last_kernel_size": last.shape[-1],
        "dilation_base": settings.get("dilation_base") or 2,
        "compress": compress,
        "lstm": len(lstm),
        "causal": bool(base["causal"] if settings.get("causal") is None else settings["causal"]),
        "activation": "elu",
        "norm": norm,
        "pad_mode": "zeros" if settings.get("pad_mode") == "constant" else "reflect",
        "true_skip": not any(".shortcut." in k for k in state),
    }
    try:
        return CodecConfig.from_dict(
            {
                "sample_rate": settings.get("sample_rate") or base["sample_rate"],
                "channels": first.shape[1],
                "dimension": last.shape[0],
                "encoder": seanet,
                "decoder": dict(seanet),
                "quantizer": {
                    "name": "grvq",
                    "groups": 1,
                    "levels": len(levels),
                    "codebook_size": embed.shape[0],
                }
                | CODEBOOK,
                "segment": settings["segment"] if "segment" in settings else base["segment"],
                "model_id": kind,
            }
        )
    except ConfigError as err:
        raise CheckpointError(f"{path}: unsupported EnCodec architecture ({err})") from None


# -- weights ---------------------------------------------------------------------------------


def _our_name(key: str) -> str:
    key = key.replace(".conv.conv.", ".conv.").replace(".convtr.convtr.", ".convtr.")
    key = key.replace(".conv.norm.", ".norm.").replace(".convtr.norm.", ".norm.")
    key = re.sub(r"\.convtr\.bias$", ".bias", key)
    key = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", key)
    return re.sub(r"\.weight_v$", ".parametrizations.weight.original1", key)


# EnCodec's codebook tensors (quantizer.vq.layers.L._codebook.*) by the quantizer's names
_CODEBOOK_TENSORS = {
    "embed": "codebook",
    "embed_avg": "codebook_avg",
    "cluster_size": "cluster_size",
}


def encodec_state(state: dict, model: Codec, path: Path) -> dict[str, torch.Tensor]:
    """EnCodec tensors (original names) -> `model`'s state dict; the first missing, unknown or
    misshapen key is named."""
    ours = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    codebooks: dict[str, list] = {"embed": [], "embed_avg": [], "cluster_size": [], "inited": []}
    for key, tensor in state.items():
        match = re.match(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.(\w+)$", key)
        if match:
            if match.group(2) not in codebooks:
                raise CheckpointError(f"{path}: unknown EnCodec tensor {key}")
            codebooks[match.group(2)].append((int(match.group(1)), key, tensor))
            continue
        name = _our_name(key)
        if name not in ours:
            raise CheckpointError(f"{path}: unknown EnCodec tensor {key}")
        if tuple(tensor.shape) != tuple(ours[name].shape):
            raise CheckpointError(
                f"{path}: {key} has shape {list(tensor.shape)}, expected {list(ours[name].shape)}"
            )
        out[name] = tensor.to(ours[name].dtype)
    shapes, levels = model.quantizer.level_shapes(), {}
    for field, entries in codebooks.items():
        entries.sort()
        if [e[0] for e in entries] != list(range(model.levels)):
            raise CheckpointError(f"{path}: codebook tensors {field} missing for some levels")
        if field == "inited":
            continue
        name = _CODEBOOK_TENSORS[field]
        for _, key, tensor in entries:
            if tuple(tensor.shape) != shapes[name]:
                raise CheckpointError(
                    f"{path}: {key} has shape {list(tensor.shape)}, expected {list(shapes[name])}"
                )
        levels[name] = [tensor[None] for _, _, tensor in entries]
    initialised = all(bool(tensor.all()) for _, _, tensor in codebooks["inited"])
    quantizer = model.quantizer.state_from_levels(levels, initialised=initialised)
    out |= {f"quantizer.{key}": tensor for key, tensor in quantizer.items()}
    for name, tensor in ours.items():
        if name not in out:
            if name.endswith("_extra_state"):
                out[name] = tensor
                continue
            raise CheckpointError(f"{path}: missing the EnCodec tensor for {name}")
    return out


def import_encodec(source, kind: str | None = None) -> Codec:
    """An EnCodec `.th` file or Hugging Face folder -> Codec (weight norm kept, train-ready).
    `kind` (encodec_24khz / encodec_48khz) defaults to the file name's, else the norm's."""
    path = Path(source)
    if path.is_dir():
        state, settings = read_hf_folder(path)
    else:
        state, settings = read_th(path), {}
    if kind is None:
        kind = kind_of_file(path)
    if kind is None:
        kind = "encodec_48khz" if any(".norm.weight" in k for k in state) else "encodec_24khz"
    if kind not in KINDS:
        raise CheckpointError(f"{path}: unknown EnCodec kind {kind!r} ({', '.join(KINDS)})")
    config = encodec_config(state, path, kind, settings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the quantizer's RNG seed: the same file imports to the same folder
        model = Codec(config)
    model.load_state_dict(encodec_state(state, model, path))
    return model
