"""Training checkpoints: written atomically, loaded without unpickling code, rotated.

A checkpoint is a dict of tensors and plain Python values (ints, floats, strings, lists,
tuples, dicts), so `torch.load(weights_only=True)` reads it; a file that needs anything else
(pickled code) is refused with a message that says so.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from codec.errors import CheckpointError, first_line
from codec.fileio import atomic_write

PATTERN = re.compile(r"^step_(\d+)\.ckpt$")


def save_checkpoint(folder, step: int, state: dict, keep_last: int = 3) -> Path:
    """Write `state` as folder/step_<step>.ckpt atomically, then delete all but the newest
    `keep_last` step checkpoints (other files, such as best.ckpt, are left alone)."""
    folder = Path(folder)
    path = atomic_write(folder / f"step_{step:08d}.ckpt", lambda tmp: _save(state, tmp))
    for old in list_checkpoints(folder)[:-keep_last] if keep_last > 0 else []:
        old.unlink(missing_ok=True)
    return path


def _save(state: dict, path) -> None:
    """torch.save through a Python file, so a failed write keeps its OS reason: torch's own
    writer reports a full disk or a file-size limit as "enforce fail ... unexpected pos"."""
    with open(path, "wb") as handle:
        try:
            torch.save(state, handle)
        except RuntimeError as err:
            if isinstance(err.__context__, OSError):
                raise err.__context__ from None
            raise


def remove_stale_temps(folder) -> list[Path]:
    """Delete temp files that a killed writer left behind (`.NAME.XXXX.tmp`, see
    codec.fileio.atomic_write); call it only while no writer runs on `folder`."""
    folder = Path(folder)
    stale = list(folder.glob(".*.tmp")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def step_of(path) -> int:
    """The step of a checkpoint from its name, step_<step>.ckpt."""
    return int(PATTERN.match(Path(path).name).group(1))


def list_checkpoints(folder) -> list[Path]:
    """Step checkpoints in `folder`, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if PATTERN.match(p.name)]
    return sorted(found, key=step_of)


def load_checkpoint(path) -> dict:
    """Read a checkpoint without running any code from it."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused: the file holds more than tensors and plain values "
            f"(pickled code?), and checkpoints are never unpickled ({first_line(err)})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint ({first_line(err)})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path}: not a training checkpoint")
    return state


def latest_checkpoint(folder) -> dict | None:
    """The newest readable checkpoint in `folder` (a damaged newest one is skipped)."""
    for path in reversed(list_checkpoints(folder)):
        try:
            return load_checkpoint(path) | {"path": str(path)}
        except CheckpointError as err:
            print(f"warning: {err}; trying an older checkpoint")
    return None
