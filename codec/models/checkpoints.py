"""Reading other projects' checkpoint files without running anything in them.

PyTorch files are read with `torch.load(weights_only=True)`, which refuses any pickled object
but tensors and plain containers; a torch.package archive (which carries code) is never opened
as one. Safetensors files are tensors by construction.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from codec.errors import CheckpointError, first_line


def read_torch_file(path: Path):
    """The plain data (dicts, lists, tensors, numbers, strings) pickled in a PyTorch file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(name.endswith(".data/extern_modules") for name in names):
            raise CheckpointError(
                f"{path}: a torch.package archive (it carries code, which is never run); "
                "pass the plain state-dict file"
            )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: holds more than tensors, refused without running it ({first_line(err, 160)})"
        ) from None
    except Exception as err:  # noqa: BLE001 - weights_only unpickling of garbage raises anything
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({first_line(err, 160)})"
        ) from None


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable safetensors file ({err})") from None


def tensor_dict(data, path: Path, what: str = "state dict") -> dict[str, torch.Tensor]:
    """`data` checked to be a {name: tensor} mapping."""
    if not isinstance(data, dict) or not data:
        raise CheckpointError(f"{path}: expected a {what} (a mapping of names to tensors)")
    for key, value in data.items():
        if not isinstance(key, str) or not torch.is_tensor(value):
            raise CheckpointError(f"{path}: {what} entry {key!r} is not a named tensor")
    return data
