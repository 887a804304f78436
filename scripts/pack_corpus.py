"""Pack a deterministic subset of a training corpus into a size budget of mono FLAC, leaving out
the files that a training run on the corpus holds out:

    python scripts/pack_corpus.py SRC OUT [--max-mib 56] [--rate 16000] [--experiment NAME]

For taking real speech to a machine that has none (the GPU one-shot, scripts/gpu_oneshot.sh,
carries OUT). The held-out splits are the trainer's own: `codec.train.data.split_manifest` over
SRC with the experiment's data settings, so no packed file is one that a run of that
experiment on SRC validates or is tested on (recipes/speech16k/results/heldout55.txt among
them).

The training files are taken in the order of a hash of their path relative to SRC, which
spreads the subset over the corpus (levels, speakers, languages) and makes it the same for the
same SRC and budget. Each is read with codec.audio (resampled to `--rate`, mixed to mono) and
written as 16-bit FLAC to OUT/<its path relative to SRC, suffix .flac>, until the next one
would pass the budget. OUT/PACKED.txt lists the source of each packed file; an OUT that has
one is left as it is. The folder appears whole or not at all (built aside, then renamed).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

from codec.audio import AudioError, read_for, write_audio
from codec.train import compose_config
from codec.train.data import AudioRecord, build_manifest, split_cfg

MANIFEST = "PACKED.txt"


def training_records(src: Path, experiment: str) -> tuple[list[AudioRecord], int]:
    """(the records of SRC that a run of `experiment` trains on, how many it holds out)."""
    cfg = compose_config([f"experiment={experiment}", f"data.root={src}", "run_dir=unused"])
    records, problems = build_manifest([src])
    for problem in problems:
        print(f"warning: left out {problem}", file=sys.stderr)
    if not records:
        raise SystemExit(f"{src}: no readable audio")
    split = split_cfg(cfg, records)
    return split.train, len(split.valid) + len(split.test)


def packing_order(records: list[AudioRecord]) -> list[AudioRecord]:
    """Records ordered by a hash of their key: a spread-out, reproducible order."""
    return sorted(records, key=lambda r: (hashlib.sha1(f"pack:{r.key}".encode()).digest(), r.key))


def pack(records: list[AudioRecord], out: Path, max_bytes: int, rate: int) -> list[AudioRecord]:
    """Write records (in order) as mono FLAC at `rate` under `out` until the next would pass
    `max_bytes`; -> the records packed, each at out/<key with suffix .flac>."""
    packed, used = [], 0
    for record in records:
        target = out / Path(record.key).with_suffix(".flac")
        try:
            wav = read_for(record.path, rate, 1)
        except AudioError as err:
            print(f"warning: left out {err}", file=sys.stderr)
            continue
        write_audio(target, wav, rate)
        size = target.stat().st_size
        if used + size > max_bytes:
            target.unlink()
            break
        used += size
        packed.append(record)
    return packed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="the corpus folder a run would train on")
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-mib", type=float, default=56.0, help="size budget of OUT")
    parser.add_argument("--rate", type=int, default=16000, help="sample rate of the FLAC files")
    parser.add_argument("--experiment", default="speech16k_gpu", help="whose data split to respect")
    args = parser.parse_args()
    if (args.out / MANIFEST).is_file():
        print(f"{args.out}: already packed (remove it to pack again)")
        return
    if not args.src.is_dir():
        sys.exit(f"{args.src}: no such folder")
    train, held_out = training_records(args.src, args.experiment)
    building = args.out.with_name(f".{args.out.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    packed = pack(packing_order(train), building, int(args.max_mib * 2**20), args.rate)
    minutes = sum(r.seconds for r in packed) / 60
    header = (
        f"# {len(packed)} of the {len(train)} training files of {args.src}, {minutes:.1f} min "
        f"(experiment={args.experiment}; its {held_out} held-out files left out), "
        f"{args.rate} Hz mono FLAC: packed path, source path\n"
    )
    lines = [f"{Path(r.key).with_suffix('.flac').as_posix()}\t{r.path}\n" for r in packed]
    (building / MANIFEST).write_text(header + "".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    building.rename(args.out)
    mib = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file()) / 2**20
    print(f"{args.out}: {len(packed)} files, {minutes:.1f} min, {mib:.1f} MiB")


if __name__ == "__main__":
    main()
