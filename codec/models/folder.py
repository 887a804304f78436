"""Model folders: config.json (the nested config and a weights hash) and model.safetensors.

Loading trusts nothing in the folder: the config is checked field by field, the model it
describes is first built on the meta device (no memory) and its state dict compared, key by
key, shape by shape and in bytes, with the weights file's header before anything is allocated.
Nothing is unpickled.

The model class is the caller's (`Codec.from_pretrained` passes itself as `build`): this module
knows a model only as a config, a state dict and a weights hash.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from codec.fileio import atomic_write_bytes
from codec.models.config import CodecConfig
from codec.models.options import ConfigError
from codec.nn import fold_weight_norm, for_cpu_inference

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
STORAGE_DTYPES = (torch.float16, torch.bfloat16)  # allowed in place of a float32 tensor

Build = Callable[[CodecConfig], nn.Module]  # a config -> the model it describes (Codec)


class ModelFormatError(ValueError):
    """A saved model folder that cannot be loaded; the message names the folder and problem."""


def round_to_storage(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Round every float32 parameter and buffer of `model` in place to the nearest `dtype`
    value (float16 or bfloat16), kept as float32, so that storing the weights as `dtype`
    loses nothing: the loaded model equals this one, weights hash included. A tensor whose
    values `dtype` cannot hold (beyond its range) is left as it is."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage dtype must be one of {STORAGE_DTYPES}, got {dtype}")
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.dtype == torch.float32:
                rounded = tensor.to(dtype)
                if torch.isfinite(rounded).all():
                    tensor.copy_(rounded)
    return model


def save_model(model: nn.Module, directory, storage: torch.dtype | None = None) -> Path:
    """Write a Codec's config.json and model.safetensors (atomically) to `directory`. With
    `storage` (float16 or bfloat16), float32 tensors that `round_to_storage` made exact in that
    dtype are stored in it (about half the file); the others stay float32. A model whose
    weight norm was folded saves its parts' folded settings (Options.folded)."""
    from safetensors.torch import save

    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if storage is not None:
        state = {k: _stored_as(v, storage) for k, v in state.items()}
    config = model.config
    if not any(parametrize.is_parametrized(m) for m in model.modules()):
        config = config.folded()
    _check_describes(config, state, type(model), directory)
    config = config.to_dict() | {"weights_hash": model.weights_hash()}
    directory.mkdir(parents=True, exist_ok=True)
    # bytes written by Python, so a failed write raises OSError with its reason
    atomic_write_bytes(directory / WEIGHTS_FILE, save(state))
    atomic_write_bytes(directory / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return directory


def _check_describes(config: CodecConfig, state: dict, build: Build, directory: Path) -> None:
    """ValueError unless the model `config` describes has exactly the tensors of `state`: a
    folder that would not load again is not written."""
    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        expected = {k: tuple(v.shape) for k, v in build(config).state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in state.items()}
    if expected != actual:
        key = next(
            k for k in sorted(expected.keys() | actual.keys()) if expected.get(k) != actual.get(k)
        )
        model, config_shape = actual.get(key, "absent"), expected.get(key, "absent")
        raise ValueError(
            f"{directory}: the model's config does not describe its weights "
            f"({key}: {model} in the model, {config_shape} in the config)"
        )


def _stored_as(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`tensor` in `dtype` when that loses nothing, else as it is."""
    if tensor.dtype != torch.float32:
        return tensor
    stored = tensor.to(dtype)
    return stored if torch.equal(stored.float(), tensor) else tensor


def read_config(directory: Path) -> tuple[CodecConfig, str | None]:
    path = directory / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        expected_hash = data.pop("weights_hash", None)
        if expected_hash is not None and not isinstance(expected_hash, str):
            raise ValueError("weights_hash must be a string")
        return CodecConfig.from_dict(data), expected_hash
    except (ValueError, TypeError, UnicodeDecodeError) as err:
        raise ModelFormatError(f"{path}: bad model config ({err})") from None


def check_weights_fit(config: CodecConfig, path: Path, build: Build) -> None:
    """The model `config` describes, built by `build` on the meta device, against the header of the
    safetensors file at `path`: same keys, shapes, and bytes (float32 tensors may be stored
    as float16 or bfloat16). Raises ModelFormatError naming the first mismatch."""
    from safetensors import SafetensorError, safe_open

    try:
        with torch.device("meta"):
            expected = build(config).state_dict()
    except (ValueError, TypeError) as err:
        raise ModelFormatError(f"{path.parent / CONFIG_FILE}: bad model config ({err})") from None
    try:
        with safe_open(str(path), "pt") as handle:
            stored = {k: handle.get_slice(k) for k in handle.keys()}
            layout = {k: (tuple(s.get_shape()), s.get_dtype()) for k, s in stored.items()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFormatError(f"{path}: unreadable weights ({err})") from None
    missing = [k for k in expected if k not in layout]
    if missing:
        raise ModelFormatError(f"{path}: weights do not fit the config (missing {missing[0]})")
    unexpected = [k for k in layout if k not in expected]
    if unexpected:
        raise ModelFormatError(
            f"{path}: weights do not fit the config (unexpected {unexpected[0]})"
        )
    need = 0
    for key, tensor in expected.items():
        shape, dtype_name = layout[key]
        if shape != tuple(tensor.shape):
            raise ModelFormatError(
                f"{path}: weights do not fit the config ({key} has shape {list(shape)}, "
                f"the config needs {list(tensor.shape)})"
            )
        dtype = _DTYPES.get(dtype_name)
        if dtype != tensor.dtype and not (
            tensor.dtype == torch.float32 and dtype in STORAGE_DTYPES
        ):
            raise ModelFormatError(
                f"{path}: weights do not fit the config ({key} is stored as {dtype_name}, "
                f"the model needs {tensor.dtype})"
            )
        need += tensor.numel() * dtype.itemsize
    size = path.stat().st_size
    if need > size:
        raise ModelFormatError(
            f"{path}: config.json describes {need} bytes of weights, the file holds {size}"
        )


_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def load_model(directory, build: Build, inference: bool = True) -> nn.Module:
    """A folder written by `save_model` -> build(its config) with its weights. With
    `inference`, weight norm is folded away, the model is in eval mode without gradients, and
    converted for fast CPU inference (codec.nn.inference; a model moved to another device runs
    its plain path)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ModelFormatError(f"{directory}: not a saved model (missing {path.name})")
    config, expected_hash = read_config(directory)
    check_weights_fit(config, weights_path, build)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFormatError(f"{weights_path}: unreadable weights ({err})") from None
    try:
        model = build(config)
    except (ConfigError, ValueError, TypeError) as err:
        raise ModelFormatError(f"{config_path}: bad model config ({err})") from None
    model.load_state_dict(state)  # keys and shapes were checked against the header
    if expected_hash is not None and model.weights_hash() != expected_hash:
        raise ModelFormatError(f"{weights_path}: weights hash does not match config.json")
    model.saved_hash = expected_hash or model.weights_hash()
    if inference:  # folded weights and, on the CPU, the time-major kernels
        model.eval().requires_grad_(False)
        fold_weight_norm(model)
        for_cpu_inference(model)
    return model
