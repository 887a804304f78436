"""The results tables of recipes/speech16k/README.md, rendered from the recipe's CSVs:

python recipes/speech16k/tables.py --write   # rewrite every table between its markers
python recipes/speech16k/tables.py --check   # exit 1 with one line naming a stale table

Each table sits between `<!-- table:NAME -->` and `<!-- /table:NAME -->`. The shipped model's
tables come from `codec eval`'s means (results/RUN/summary.json); the rows tables from
results/rows.csv, one line per run, split and bitrate with the commands that trained and scored
it (its `command` and `eval` columns) and columns the README leaves out (STFT distance,
steps/s, entropy; the trainer's own validation of the `dropout` and `noncausal_validation` rows).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
METRICS = ["mel", "stft", "si_sdr", "pesq", "stoi"]
HEADS = {"mel": "mel", "stft": "STFT", "si_sdr": "SI-SDR dB", "pesq": "PESQ", "stoi": "STOI"}
ROW_METRICS = ["mel", "si_sdr", "pesq", "stoi"]  # rows.csv has STFT distance too
DIGITS = {"file_kbps": 2, "mel": 3, "stft": 3, "si_sdr": 2, "pesq": 3, "stoi": 3}
KBPS = ("1.5", "3", "6", "12")

# name: (kind, what): "eval" lists (label, results folder, target kbps, codecs); "rows" names
# a section of rows.csv and its extra columns
BOTH = ("codec", "opus")
TABLES = {
    "heldout": ("eval", [("", "causal", KBPS, BOTH)]),
    "splits": ("eval", [("ood", "causal_ood", ("6",), BOTH), ("tux", "causal_tux", ("6",), BOTH)]),
    "stages": ("rows", ("stages", ["split"])),
    "ceiling": ("rows", ("ceiling", ["kbps"])),
    "quantizer": ("rows", ("quantizer", ["codes_used_pct"])),
    "frame_rate": ("rows", ("frame_rate", ["parameters"])),
    "losses_stage2": ("rows", ("losses_stage2", [])),
    "losses_stage3": ("rows", ("losses_stage3", ["band_level_db"])),
    "deeper": ("rows", ("deeper", ["parameters"])),
    "noncausal": (
        "eval",
        [("before fine-tune", "before_finetune", ("6",), ("codec",)), ("", ".", ("6",), BOTH)],
    ),
}
EXTRA = {
    "split": "split",
    "kbps": "kbps",
    "codes_used_pct": "codes used, levels 1-4 (%)",
    "parameters": "parameters",
    "band_level_db": "level 0.8-3.5 kHz dB",
}


def markdown(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(cells) + " |" for cells in [head, *body]]
    return "\n".join([lines[0], "|---" * len(head) + "|", *lines[1:]])


def number(value: float, digits: int) -> str:
    return f"{value:.{digits}f}"


def eval_table(sources, results: Path) -> str:
    """`codec eval`'s means: ours (N levels) and Opus at each listed target."""
    body = []
    for label, folder, targets, codecs in sources:
        summary = json.loads((results / folder / "summary.json").read_text())
        for mean in summary["means"]:
            if f"{mean['target_kbps']:g}" not in targets or mean["codec"] not in codecs:
                continue
            ours = mean["codec"] == "codec"
            levels = f"{mean.get('levels')} level{'s' * (mean.get('levels', 0) > 1)}"
            codec = f"ours, {levels}" if ours else mean["codec"].capitalize()
            cells = [f"{label}: {codec}" if label else codec, f"{mean['target_kbps']:g}"]
            cells += [number(mean[k], DIGITS[k]) for k in ["file_kbps", *METRICS]]
            cells.append(number(mean["entropy_kbps"], 2) if ours else "-")
            body.append(cells)
    head = ["codec", "kbps", "kbps stored", *HEADS.values(), "entropy kbps"]
    return markdown(head, body)


def rows_table(rows: list[dict], section: str, extra: list[str]) -> str:
    """rows.csv's `section`, figures as written there: the validation split at 6 kbps, unless
    `extra` names the split or kbps column."""
    chosen = [
        r
        for r in rows
        if r["section"] == section
        and ("kbps" in extra or r["kbps"] == "6")
        and ("split" in extra or r["split"] == "valid")
    ]
    first = [k for k in extra if k in ("split", "kbps")]
    last = [k for k in extra if k not in first]
    head = ["row", *(EXTRA[k] for k in first), "steps"]
    head += [HEADS[k] for k in ROW_METRICS] + [EXTRA[k] for k in last]
    keys = [*first, "steps", *ROW_METRICS, *last]
    body = [[r["row"], *(r[k] or "-" for k in keys)] for r in chosen]
    kept = [i for i in range(len(head)) if any(cells[i] != "-" for cells in body)]
    return markdown([head[i] for i in kept], [[cells[i] for i in kept] for cells in body])


def render(results: Path) -> dict[str, str]:
    """Every table by name, as Markdown."""
    with open(results / "rows.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    tables = {}
    for name, (kind, what) in TABLES.items():
        tables[name] = eval_table(what, results) if kind == "eval" else rows_table(rows, *what)
    return tables


def block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- table:{name} -->\n)(.*?)(<!-- /table:{name} -->)", re.S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the tables in the README")
    mode.add_argument("--check", action="store_true", help="exit 1 when a table is stale")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    for name, table in render(args.results).items():
        found = block(name).search(text)
        if found is None:
            print(f"error: {args.readme}: no <!-- table:{name} --> markers", file=sys.stderr)
            return 1
        if found.group(2) != table + "\n":
            if args.check:
                print(f"{args.readme}: table {name} disagrees with its CSV (run --write)")
                return 1
            text = text[: found.start(2)] + table + "\n" + text[found.end(2) :]
    if args.write:
        args.readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
