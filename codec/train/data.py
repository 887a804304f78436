"""Training data: manifests of audio folders, a deterministic split, random fixed-length
segments at the model's rate and channels; the demo corpus is generated when missing
(codec.train.synthetic).

    folder(s) -> build_manifest -> [AudioRecord] -> split_manifest -> (train, valid, test)
    train -> SegmentDataset[i] -> (wav (channels, segment), files skipped while reading)

Rules that a user can rely on:
- Files are found recursively by extension (AUDIO_SUFFIXES), in sorted order. A file whose
  header cannot be read, or that has no samples, is left out of the manifest and reported.
- Three splits: train; valid (`data.valid_fraction`: the trainer validates on it, runs are
  chosen and stopped on it); test (`data.test_fraction`: never read by the trainer, scored once
  per shipped model). The split hashes each file's path relative to its root folder with
  `data.split_seed`, not the training seed, so runs with other seeds hold out the same files; it
  does not depend on where the corpus is mounted or on the order files were found. Adding files
  can move a few old ones between splits; a resumed run refuses a split that would train on
  files it held out.
- Each epoch draws one random segment per `segment_seconds` of audio, so long files are seen in
  proportion to their length. Epoch e's order and segments depend only on (seed, e): the
  batch sampler (`EpochBatches`) hands the loader (epoch, index) pairs, so a loader worker
  started in another epoch draws the same segment, and a resumed run starts its epoch at the
  batch where the checkpoint left it. Files shorter than a segment are zero-padded at the end
  (`short="pad"`) or left out (`short="skip"`).
- A file that fails while being read (truncated, NaN samples, ...) is skipped with a warning
  naming it, another segment is drawn, and the item reports how many files newly failed (each
  file is counted once per DataLoader worker, and never read again by it).

`build_loader` and `held_out_paths` apply these to a training run's config (the `data` group).
"""

from __future__ import annotations

import hashlib
import math
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from codec.audio import (
    AudioError,
    apply_gain_db,
    audio_info,
    loudness_gain_db,
    read_for,
)
from codec.fileio import AUDIO_SUFFIXES
from codec.train.augment import build_augment
from codec.train.synthetic import make_demo_corpus

# A segment is drawn from another file at most this many times before the item fails loudly:
# a corpus whose files all fail is a configuration error, not bad luck.
MAX_READ_TRIES = 16


@dataclass(frozen=True)
class AudioRecord:
    """One audio file: `key` is its path relative to the folder it was found in, `root` that
    folder's position among the folders given."""

    path: str
    key: str
    frames: int
    sample_rate: int
    channels: int
    root: int = 0

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def find_audio(root: Path) -> list[Path]:
    """Audio files under `root` (recursively, sorted), or [root] when it is a file."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def build_manifest(roots: list[Path]) -> tuple[list[AudioRecord], list[str]]:
    """Read the headers of every audio file under `roots` -> (records, problems), where each
    problem is one line naming a file that was left out and why."""
    records, problems = [], []
    for index, root in enumerate(roots):
        root = Path(root)
        if not root.exists():
            problems.append(f"{root}: no such file or folder")
            continue
        for path in find_audio(root):
            try:
                info = audio_info(path)
            except AudioError as err:
                problems.append(str(err))
                continue
            if info.frames <= 0:
                problems.append(f"{path}: no audio samples")
                continue
            key = path.name if root.is_file() else path.relative_to(root).as_posix()
            records.append(
                AudioRecord(str(path), key, int(info.frames), info.samplerate, info.channels, index)
            )
    return records, problems


def _unit_hash(text: str) -> float:
    digest = hashlib.sha1(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class Split(NamedTuple):
    train: list[AudioRecord]
    valid: list[AudioRecord]
    test: list[AudioRecord]


def split_manifest(
    records: list[AudioRecord], valid_fraction: float, seed: int = 0, test_fraction: float = 0.0
) -> Split:
    """(train, valid, test): in each folder, records ranked by their hashed keys; the first
    `valid_fraction` go to valid, the next `test_fraction` to test (valid and test each get at
    least one record in all when their fraction is positive and there are records to spare).
    Per folder, so that adding a folder to a corpus leaves the other folders' held-out files as
    they were; valid is the same whatever `test_fraction` is."""
    if not (0.0 <= valid_fraction and 0.0 <= test_fraction and valid_fraction + test_fraction < 1):
        raise ValueError(
            "valid_fraction and test_fraction must be >= 0 with a sum below 1, got "
            f"{valid_fraction} and {test_fraction}"
        )

    def rank(record: AudioRecord):
        return _unit_hash(f"{seed}:{record.key}"), record.key

    by_root: dict[int, list[AudioRecord]] = {}
    for record in records:
        by_root.setdefault(record.root, []).append(record)
    valid, test = [], []
    for group in by_root.values():
        ranked = sorted(group, key=rank)
        n_valid = round(len(group) * valid_fraction)
        valid += ranked[:n_valid]
        test += ranked[n_valid : n_valid + round(len(group) * test_fraction)]
    ranked = sorted(records, key=rank)
    if not valid and valid_fraction > 0 and len(records) >= 2:
        valid = [next(r for r in ranked if r not in test)]
    if not test and test_fraction > 0 and len(records) >= 3:
        test = [next(r for r in ranked if r not in valid)]
    valid = sorted(valid, key=lambda r: (r.root, r.key))
    test = sorted(test, key=lambda r: (r.root, r.key))
    chosen = {id(r) for r in valid + test}
    return Split([r for r in records if id(r) not in chosen], valid, test)


class SegmentDataset(torch.utils.data.Dataset):
    """Random fixed-length segments of the records at the model's rate and channels.

    item -> (wav (channels, round(segment_seconds * sample_rate)) float32, skipped files: int)
    Deterministic for a given seed, epoch and index, in any number of DataLoader workers.
    `augment(wav, rate, rng)` (codec.train.augment), when given, changes each segment after
    loudness normalisation."""

    def __init__(
        self,
        records: list[AudioRecord],
        sample_rate: int,
        channels: int,
        segment_seconds: float,
        loudness_lufs: float | None = None,
        short: str = "pad",
        seed: int = 0,
        augment=None,
    ):
        if short not in ("pad", "skip"):
            raise ValueError(f"short must be 'pad' or 'skip', got {short!r}")
        self.sample_rate, self.channels = sample_rate, channels
        self.segment = int(round(segment_seconds * sample_rate))
        if self.segment <= 0:
            raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
        self.loudness_lufs, self.seed, self.epoch = loudness_lufs, seed, 0
        self.augment = augment
        if short == "skip":
            records = [r for r in records if r.seconds >= segment_seconds]
        if not records:
            raise ValueError(f"no training file is {segment_seconds} s or longer (short={short!r})")
        self.records = records
        per_file = [max(1, math.floor(r.seconds / segment_seconds)) for r in records]
        self.ends = np.cumsum(per_file)
        self.bad: set[str] = set()

    def __len__(self) -> int:
        return int(self.ends[-1])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        """item: an index (of the epoch set by set_epoch) or an (epoch, index) pair; loader
        workers get pairs, because their copy of the dataset never sees set_epoch."""
        epoch, index = item if isinstance(item, tuple) else (self.epoch, item)
        rng = np.random.default_rng([self.seed, epoch, index])
        record = self.records[int(np.searchsorted(self.ends, index, side="right"))]
        skipped = 0
        for _ in range(MAX_READ_TRIES):
            if record.path not in self.bad:
                try:
                    return self._segment(record, rng), skipped
                except AudioError as err:
                    self.bad.add(record.path)
                    print(f"warning: skipped {err}", file=sys.stderr, flush=True)
                skipped += 1
            record = self.records[int(rng.integers(len(self.records)))]
        raise RuntimeError(
            f"{MAX_READ_TRIES} training files in a row could not be read; see the warnings"
        )

    def _segment(self, record: AudioRecord, rng: np.random.Generator) -> torch.Tensor:
        """Read only the samples the segment needs (at the source rate), then convert."""
        need = math.ceil(self.segment * record.sample_rate / self.sample_rate)
        start = int(rng.integers(0, max(1, record.frames - need + 1)))
        wav = read_for(record.path, self.sample_rate, self.channels, start=start, frames=need)
        wav = wav[:, : self.segment]
        if self.loudness_lufs is not None:
            wav = apply_gain_db(wav, loudness_gain_db(wav, self.sample_rate, self.loudness_lufs))
        if wav.shape[-1] < self.segment:
            wav = torch.nn.functional.pad(wav, (0, self.segment - wav.shape[-1]))
        if self.augment is not None:
            wav = self.augment(wav, self.sample_rate, rng)
        return wav.contiguous()


class EpochBatches(torch.utils.data.Sampler):
    """One rank's batches of (epoch, index) pairs, epoch by epoch, resumable mid-epoch.

    epoch e: a permutation of range(size) from a generator seeded with seed + e -> its first
    size // world * world entries -> rank r takes entries r, r + world, ... -> batches of
    `batch_size` (a last short batch is dropped). `set_epoch(e, skip)` starts epoch e at its
    batch `skip`: a run resumed from a checkpoint sees the batches an uninterrupted run sees.
    """

    def __init__(self, size: int, batch_size: int, rank: int = 0, world: int = 1, seed: int = 0):
        self.size, self.batch_size, self.rank, self.world = size, batch_size, rank, world
        self.seed, self.epoch, self.skip = seed, 0, 0
        self.per_epoch = size // world // batch_size
        if self.per_epoch < 1:
            raise ValueError(
                f"the training set gives {size // world} segment(s) per rank, fewer than "
                f"data.batch_size={batch_size}"
            )

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        return max(0, self.per_epoch - self.skip)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator)[
            : self.size // self.world * self.world
        ]
        mine = order[self.rank :: self.world].tolist()
        for batch in range(self.skip, self.per_epoch):
            start = batch * self.batch_size
            yield [(self.epoch, index) for index in mine[start : start + self.batch_size]]


# -- a training run's data, from its config -------------------------------------------------------


class NoAudioError(ValueError):
    """No readable audio in the training data's folders; `codec train` reports it in one line."""


HELD_OUT_FILE = "heldout.txt"  # the validation split
TEST_FILE = "test.txt"  # the test split


def data_roots(cfg: DictConfig, run_dir: Path) -> list[Path]:
    """The folders a run trains on (the demo corpus lives in the run folder by default)."""
    root = cfg.data.root
    if cfg.data.kind == "demo":
        return [Path(root) if root else Path(run_dir) / "corpus"]
    return [Path(r) for r in ([root] if isinstance(root, str) else root)]


def build_loader(
    cfg: DictConfig,
    sample_rate: int,
    channels: int,
    loudness_lufs: float | None,
    run_dir: Path,
    rank: int = 0,
    world: int = 1,
):
    """(training DataLoader of segments at `sample_rate` and `channels`, the held-out split
    (its `train` is the loader's records), files skipped as unreadable). The demo corpus is
    generated (rank 0) when missing."""
    data = cfg.data
    roots = data_roots(cfg, run_dir)
    if data.kind == "demo":
        root = roots[0]
        if rank == 0 and not root.is_dir():
            make_demo_corpus(
                root, count=data.count, seconds=data.seconds, sample_rate=sample_rate, seed=cfg.seed
            )
        if world > 1:
            dist.barrier()
    records, problems = build_manifest(roots)
    if not records:
        raise NoAudioError(f"no readable audio in {', '.join(map(str, roots))}")
    split = split_cfg(cfg, records)
    dataset = SegmentDataset(
        split.train,
        sample_rate,
        channels,
        data.segment_seconds,
        loudness_lufs=loudness_lufs,
        short=data.short,
        seed=cfg.seed,
        augment=build_augment(cfg.get("augment")),
    )
    batches = EpochBatches(len(dataset), data.batch_size, rank, world, seed=cfg.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=data.num_workers,
        generator=torch.Generator().manual_seed(cfg.seed),
        persistent_workers=data.num_workers > 0,
        worker_init_fn=leave_stop_signals_to_the_trainer,
    )
    return loader, split, problems


def split_seed(cfg: DictConfig) -> int:
    """The seed of a run's held-out split: `data.split_seed`, or for configs saved before that
    setting existed, the training seed (which used to choose the split)."""
    return cfg.data.get("split_seed", cfg.seed)


def split_cfg(cfg: DictConfig, records: list[AudioRecord]) -> Split:
    """split_manifest with a run's data settings (configs saved before `data.test_fraction`
    existed have no test split)."""
    data = cfg.data
    return split_manifest(
        records, data.valid_fraction, split_seed(cfg), data.get("test_fraction", 0.0)
    )


def leave_stop_signals_to_the_trainer(_worker_id: int) -> None:
    """Ctrl-C and `kill -- -PGID` signal the whole process group: a worker that died of it
    would end the run with a traceback instead of the trainer's checkpoint. The trainer stops
    its workers when it exits; they also exit when it dies."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def held_out_paths(run_dir, split: str = "valid", records=None) -> list[Path]:
    """The files of a run's validation split (`split="valid"`: it validates on them) or test
    split ("test"); it never trains on either. The list it wrote when it started
    (run_dir/heldout.txt, run_dir/test.txt), or for runs older than that list, the split
    rebuilt from its saved config (the same while the data folders have not changed) over
    `records` (default: its data folders' manifest, built here)."""
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    run_dir = Path(run_dir)
    listed = run_dir / (HELD_OUT_FILE if split == "valid" else TEST_FILE)
    if listed.is_file():
        return [Path(line) for line in listed.read_text().splitlines() if line]
    if not (run_dir / "config.yaml").is_file():
        raise ValueError(f"{run_dir}: not a training run (no {listed.name} or config.yaml)")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    if records is None:
        records, _ = build_manifest(data_roots(cfg, run_dir))
    return [Path(r.path) for r in getattr(split_cfg(cfg, records), split)]


def train_paths(run_dir) -> list[Path]:
    """The files a run trains on: every audio file of its data folders (as they are now) that
    is in neither of its held-out splits (`held_out_paths`)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ValueError(f"{run_dir}: not a training run (no config.yaml)")
    records, _ = build_manifest(data_roots(OmegaConf.load(run_dir / "config.yaml"), run_dir))
    held = {str(p) for split in ("valid", "test") for p in held_out_paths(run_dir, split, records)}
    return [Path(r.path) for r in records if str(r.path) not in held]
