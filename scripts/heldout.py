"""Print the files of a training run's split, one path a line: its validation split (the
default; runs are chosen on it), its test split (`--split test`; reported once per model) or
the files it trains on (`--split train`):

python scripts/heldout.py RUN_DIR [--split valid|test|train] [--limit N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codec.train import held_out_paths
from codec.train.data import train_paths

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", choices=["valid", "test", "train"], default="valid")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    try:
        if args.split == "train":
            paths = train_paths(args.run_dir)
        else:
            paths = held_out_paths(args.run_dir, args.split)
    except ValueError as err:
        sys.exit(str(err))
    if not paths:
        sys.exit(
            f"{args.run_dir}: no {args.split} files ({args.split}_fraction 0, or the data is gone)"
        )
    for path in paths[: args.limit]:
        print(path)
