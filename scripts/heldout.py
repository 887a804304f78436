"""Print the held-out (validation) files of a training run, one path a line:

python scripts/heldout.py RUN_DIR [--limit N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from codec.train import held_out_records

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    for record in held_out_records(args.run_dir)[: args.limit]:
        print(record.path)
