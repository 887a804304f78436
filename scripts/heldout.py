"""Print the held-out (validation) files of a training run, one path a line:

python scripts/heldout.py RUN_DIR [--limit N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codec.train import held_out_paths

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    try:
        paths = held_out_paths(args.run_dir)
    except ValueError as err:
        sys.exit(str(err))
    if not paths:
        sys.exit(f"{args.run_dir}: no held-out files (valid_fraction 0, or the data is gone)")
    for path in paths[: args.limit]:
        print(path)
