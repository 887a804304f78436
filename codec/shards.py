"""Token-stream shards for language models: a dataset's codes in memory-mappable numpy files.

    OUT/meta.json                  model id and hash, frame rate, groups, levels, codebook size
    OUT/shard_00000.npy            codes (frames, levels * groups), uint16 or int32, one row a
                                   frame, column k = level * groups + group (so the first
                                   L * groups columns are the first L levels, every group kept)
    OUT/shard_00000.index.npy      one row per utterance: id, path, frames, offset (first row)

All files are plain .npy (no pickle: `np.load(path, mmap_mode="r")` reads them); the index is
written last and atomically, so a shard is finished exactly when its index exists, and a
re-run skips finished shards. Shard k holds files [k * size, (k + 1) * size) of the sorted file
list; under torchrun, rank r writes the shards k with k % world == r. A re-run first deletes
the temp files that a killed writer of its own shards left (each shard has one writer, so no
rank touches another's temp files), then writes every shard that has no index.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from codec.fileio import atomic_write_bytes

INDEX_DTYPE = np.dtype([("id", "U128"), ("path", "U512"), ("frames", "<i8"), ("offset", "<i8")])


def shard_paths(out: Path, shard: int) -> tuple[Path, Path]:
    return out / f"shard_{shard:05d}.npy", out / f"shard_{shard:05d}.index.npy"


def flatten_codes(codes: torch.Tensor) -> np.ndarray:
    """(groups, levels, frames) -> (frames, levels * groups), column k = level * groups + group."""
    return rearrange(codes, "g q f -> f (q g)").cpu().numpy()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_shard(out: Path, shard: int, items: list[tuple[str, str, np.ndarray]], dtype) -> None:
    """items: (utterance id, source path, codes (frames, levels * groups)) in order."""
    codes_path, index_path = shard_paths(out, shard)
    index = np.zeros(len(items), dtype=INDEX_DTYPE)
    offset = 0
    for row, (uid, path, codes) in enumerate(items):
        index[row] = (uid, path, codes.shape[0], offset)
        offset += codes.shape[0]
    width = items[0][2].shape[1] if items else 0
    stacked = np.concatenate([c for *_, c in items]) if items else np.zeros((0, width))
    atomic_write_bytes(codes_path, _npy_bytes(stacked.astype(dtype)))
    atomic_write_bytes(index_path, _npy_bytes(index))  # last: marks the shard finished


def remove_stale_temps(out: Path, shards) -> list[Path]:
    """Delete the temp files (`.NAME.XXXX.tmp`, see codec.fileio.atomic_write) of `shards`'
    files in `out`; call it only from the one process that writes those shards."""
    stale = []
    for shard in shards:
        for path in shard_paths(out, shard):
            stale += out.glob(f".{path.name}.*.tmp")
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def tokenize(
    files: list[Path],
    root: Path | None,
    out: Path,
    encode: Callable[[list[Path]], list[torch.Tensor | Exception]],
    meta: dict,
    shard_size: int = 256,
    rank: int = 0,
    world: int = 1,
) -> dict[str, int]:
    """Encode `files` (sorted) into shards under `out`; `encode` maps a batch of paths to codes
    (groups, levels, frames) or the exception that file raised. Returns counts of shards
    written and skipped and of files that failed, with the failures and the temp files of an
    interrupted earlier run that were removed (the caller reports both)."""
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(files)
    mine = range(rank, (len(files) + shard_size - 1) // shard_size, world)
    removed = remove_stale_temps(out, mine)
    if rank == 0:
        for path in out.glob(".meta.json.*.tmp"):
            path.unlink(missing_ok=True)
            removed.append(path)
        atomic_write_bytes(out / "meta.json", (json.dumps(meta, indent=2) + "\n").encode())
    dtype = np.uint16 if meta["codebook_size"] <= 1 << 16 else np.int32
    counts = {"written": 0, "skipped": 0, "failed": 0}
    failures: list[str] = []
    for shard in mine:
        if shard_paths(out, shard)[1].exists():
            counts["skipped"] += 1
            continue
        batch = files[shard * shard_size : (shard + 1) * shard_size]
        items = []
        for path, result in zip(batch, encode(batch)):
            if isinstance(result, Exception):
                counts["failed"] += 1
                failures.append(f"{path}: {result}")
                continue
            uid = str(path.relative_to(root).with_suffix("")) if root else path.stem
            items.append((uid, str(path), flatten_codes(result)))
        write_shard(out, shard, items, dtype)
        counts["written"] += 1
    counts["failures"], counts["removed"] = failures, removed
    return counts
