"""Training data: manifests of audio folders, a deterministic split, random fixed-length
segments at the model's rate and channels, and the built-in demo corpus.

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
import torchaudio.functional as AF
from omegaconf import DictConfig, OmegaConf

from codec.audio import (
    AudioError,
    apply_gain_db,
    audio_info,
    loudness_gain_db,
    read_for,
    write_audio,
)
from codec.fileio import AUDIO_SUFFIXES
from codec.train.augment import build_augment

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


# -- the demo corpus ----------------------------------------------------------------------------

# (F1, F2, F3) in Hz of a few vowels, for speech-like formant trajectories.
VOWELS = np.array(
    [[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410]],
    dtype=np.float64,
)


def _smooth_walk(rng, n: int, points: int, low: float, high: float) -> np.ndarray:
    """A smooth random contour of n samples through `points` random values in [low, high]."""
    knots = rng.uniform(low, high, size=points)
    return np.interp(np.linspace(0, points - 1, n), np.arange(points), knots)


def _speech_like(rng, n: int, rate: int) -> np.ndarray:
    """Voiced syllables: a harmonic source with a moving pitch shaped by moving formants,
    syllable envelopes, and short noise bursts standing in for fricatives."""
    t = np.arange(n) / rate
    seconds = n / rate
    f0 = _smooth_walk(rng, n, max(2, int(seconds * 3)), rng.uniform(85, 140), rng.uniform(160, 260))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    vowel_track = rng.integers(len(VOWELS), size=max(2, int(seconds * 4)))
    formants = np.stack(
        [
            np.interp(
                np.linspace(0, len(vowel_track) - 1, n),
                np.arange(len(vowel_track)),
                VOWELS[vowel_track, k],
            )
            for k in range(3)
        ]
    )
    out = np.zeros(n)
    for k in range(1, int(min(rate / 2 - 200, 4000) / 85)):
        freq = k * f0
        gain = sum(
            1.0 / (1.0 + ((freq - formants[j]) / (60 + 40 * j)) ** 2) / (j + 1) for j in range(3)
        )
        out += np.where(freq < rate / 2 - 100, gain, 0.0) * np.sin(k * phase) / k**0.5
    syllable = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None)
    out *= syllable**0.7
    noise = rng.standard_normal(n)
    noise = np.diff(noise, prepend=0.0)  # tilt towards high frequencies, like /s/
    bursts = np.clip(-np.sin(2 * np.pi * rng.uniform(1, 2) * t + rng.uniform(0, 6)) - 0.7, 0, None)
    return out / (np.abs(out).max() + 1e-9) + 0.5 * noise * bursts


def _notes(rng, n: int, rate: int) -> np.ndarray:
    """A melody of harmonic notes with attack-decay envelopes and a random spectral tilt."""
    out, pos = np.zeros(n), 0
    tilt = rng.uniform(0.8, 2.0)
    while pos < n:
        length = int(rate * rng.uniform(0.15, 0.6))
        f0 = 110.0 * 2 ** (rng.integers(0, 30) / 12)
        t = np.arange(min(length, n - pos)) / rate
        envelope = (1 - np.exp(-t / 0.005)) * np.exp(-t / rng.uniform(0.1, 0.5))
        tone = sum(
            np.sin(2 * np.pi * k * f0 * t * (1 + 0.0005 * k**2) + rng.uniform(0, 6)) / k**tilt
            for k in range(1, 16)
            if k * f0 < rate / 2 - 100
        )
        out[pos : pos + len(t)] += envelope * tone
        pos += len(t)
    return out


def _noise_texture(rng, n: int, rate: int) -> np.ndarray:
    """Coloured noise (white to brown) under a slow random loudness contour, with crackles."""
    alpha = rng.uniform(0.0, 0.98)
    white = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    colored = AF.lfilter(
        white,
        torch.tensor([1.0, -alpha], dtype=torch.float32),
        torch.tensor([1.0 - alpha, 0.0], dtype=torch.float32),
        clamp=False,
    ).numpy()
    colored /= np.abs(colored).max() + 1e-9
    crackle = (rng.random(n) < 20 / rate) * rng.uniform(-1, 1, n)
    return colored * _smooth_walk(rng, n, 6, 0.2, 1.0) + crackle


KINDS = (_speech_like, _notes, _noise_texture)


def make_demo_clip(index: int, seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Clip `index` of the demo corpus: (samples,) float32 peaking at 0.3-0.9."""
    rng = np.random.default_rng([seed, index])
    n = int(round(seconds * sample_rate))
    clip = KINDS[index % len(KINDS)](rng, n, sample_rate)
    clip *= rng.uniform(0.3, 0.9) / (np.abs(clip).max() + 1e-9)
    return clip.astype(np.float32)


def make_demo_corpus(
    root: Path, count: int, seconds: float, sample_rate: int, seed: int = 0
) -> Path:
    """Write `count` deterministic clips (speech-like, notes, noise textures in turn) as 16-bit
    wavs into `root`. The folder appears whole or not at all (built aside, then renamed)."""
    root = Path(root)
    building = root.with_name(f".{root.name}.building")
    building.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        kind = KINDS[index % len(KINDS)].__name__.strip("_")
        path = building / f"{index:04d}_{kind}.wav"
        if not path.exists():
            clip = torch.from_numpy(make_demo_clip(index, seconds, sample_rate, seed))[None]
            write_audio(path, clip, sample_rate)
    building.rename(root)
    return root


# -- a training run's data, from its config -------------------------------------------------------

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
        raise SystemExit(f"codec train: no readable audio in {', '.join(map(str, roots))}")
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


def held_out_paths(run_dir, split: str = "valid") -> list[Path]:
    """The files of a run's validation split (`split="valid"`: it validates on them) or test
    split ("test"); it never trains on either. The list it wrote when it started
    (run_dir/heldout.txt, run_dir/test.txt), or for runs older than that list, the split
    rebuilt from its saved config (the same while the data folders have not changed)."""
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    run_dir = Path(run_dir)
    listed = run_dir / (HELD_OUT_FILE if split == "valid" else TEST_FILE)
    if listed.is_file():
        return [Path(line) for line in listed.read_text().splitlines() if line]
    if not (run_dir / "config.yaml").is_file():
        raise ValueError(f"{run_dir}: not a training run (no {listed.name} or config.yaml)")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    records, _ = build_manifest(data_roots(cfg, run_dir))
    return [Path(r.path) for r in getattr(split_cfg(cfg, records), split)]
