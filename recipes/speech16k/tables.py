"""The results tables of recipes/speech16k/README.md and of the shipped model's card
(codec/pretrained/speech16k/README.md), rendered from the recipe's results:

python recipes/speech16k/tables.py --write   # rewrite every table between its markers
python recipes/speech16k/tables.py --check   # exit 1 with one line naming a stale table

Each table sits between `<!-- table:NAME -->` and `<!-- /table:NAME -->`, in either document
(or both). The shipped model's tables come from `codec eval`'s means
(results/RUN/summary.json): PESQ, STOI, DNSMOS, mel, SI-SDR, the worst band's level error and
the Opus-equivalent bitrate at 6 kbps (the rate whose Opus scores as ours does); the rows
tables from results/rows.csv, one line per run, split and bitrate with the commands that
trained and scored it (its `command` and `eval` columns) and columns the README leaves out
(STFT distance, steps/s, entropy; the trainer's own validation of the `dropout` and
`noncausal_validation` rows).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

from codec.equivalent_rate import EquivalentRate

HERE = Path(__file__).resolve().parent
CARD = HERE.parents[1] / "codec" / "pretrained" / "speech16k" / "README.md"
HEADS = {"mel": "mel", "stft": "STFT", "si_sdr": "SI-SDR dB", "pesq": "PESQ", "stoi": "STOI"}
ROW_METRICS = ["mel", "si_sdr", "pesq", "stoi"]  # rows.csv has STFT distance too
KBPS = ("1.5", "3", "6", "12")

# name: (kind, what): "eval" lists (label, results folder, target kbps, codecs); "rows" names
# a section of rows.csv and its extra columns
TABLES = {
    "stages": ("rows", ("stages", ["split"])),
    "ceiling": ("rows", ("ceiling", ["kbps"])),
    "quantizer": ("rows", ("quantizer", ["codes_used_pct"])),
    "frame_rate": ("rows", ("frame_rate", ["parameters"])),
    "losses_stage2": ("rows", ("losses_stage2", [])),
    "losses_stage3": ("rows", ("losses_stage3", ["band_level_db"])),
    "deeper": ("rows", ("deeper", ["parameters"])),
}
# perceptual tables: (label, results folder, target kbps of ours, Opus targets); a source
# without a label also gives the input's row and the Opus-equivalent line
LADDER = ("6", "8", "12")
EVALUATED = {
    # the shipped model (stage 8) and the two shipped before it (stage 7: stream-exact;
    # stages 1-5: reflection padding), on the same files of each split
    **{
        f"shipped_{split}": [
            ("", f"stage8_{split}", KBPS, LADDER),
            ("stage 7", f"stream_{split}", ("6",), ()),
            ("stages 1-5", f"before_{split}", ("6",), ()),
        ]
        for split in ("valid", "test", "ood")
    },
    # stage 6 at its own budget (5,000 steps from stage 5) with one of its changes left out,
    # out of domain; stage 7 and Opus 6 below them
    "same_budget_ood": [
        ("stage 6", "same_stage6_ood", ("6",), ()),
        ("stage 6 without augmentation", "same_noaug_ood", ("6",), ()),
        ("stage 6 without the Asterisk prompts", "same_noasterisk_ood", ("6",), ()),
        ("stage 7", "stream_ood", ("6",), ("6",)),
    ],
    # 1,500 and 6,000 steps more from the stage 7 weights (stage 7's settings), with the
    # cheap discriminator and without, on validation; 6,000 steps out of domain
    "adversarial_valid": [
        ("no discriminator", "adv_control_valid", ("6",), ()),
        ("msstft_cpu", "adv_msstft_cpu_valid", ("6",), ()),
        ("no discriminator, 6,000 steps", "ctl_long_valid", ("6",), ()),
        ("msstft_cpu, 6,000 steps", "adv_long_valid", ("6",), ()),
        ("stage 7", "stream_valid", ("6",), ("6",)),
    ],
    "adversarial_ood": [
        ("no discriminator, 6,000 steps", "ctl_long_ood", ("6",), ()),
        ("msstft_cpu, 6,000 steps", "adv_long_ood", ("6",), ()),
        ("stage 7", "stream_ood", ("6",), ("6",)),
    ],
    # the stage 7 weights before rounding with a 64-tap output filter folded in
    # (equalize.py), on validation
    "output_filter_valid": [
        ("output filter, 64 taps", "eq64_valid", ("6",), ()),
        ("stage 7", "stream_valid", ("6",), ("6",)),
    ],
    # stage 8's candidates from the stage 7 weights, judged by a rule set before their
    # results: on validation, then the chosen one out of domain
    "stage8_valid": [
        ("stage 7's losses, 6,000 + 8,000 steps", "ctl_long2_valid", ("6",), ()),
        ("msstft_cpu 6,000 steps, then 3,000 without", "adv_plain_valid", ("6",), ()),
        ("stage 8: 6,000 steps, then 6,000 with STOI 8", "stoi8_lr_valid", ("6",), ()),
        ("stage 7", "stream_valid", ("6",), ("6",)),
    ],
    "stage8_ood": [
        ("stage 7's losses, 6,000 + 8,000 steps", "ctl_long2_ood", ("6",), ()),
        ("stage 8: 6,000 steps, then 6,000 with STOI 8", "stoi8_lr_ood", ("6",), ()),
        ("stage 7", "stream_ood", ("6",), ("6",)),
    ],
    # a further 6,000 steps of stage 8's last command from the stored stage 8 weights, judged
    # by the same kind of rule against stage 8 as stored
    "stage9_valid": [
        ("stage 8 + 6,000 steps with STOI 8", "stage9_6k_valid", ("6",), ()),
        ("stage 8", "stage8_valid", ("6",), ("6",)),
    ],
    "stage9_ood": [
        ("stage 8 + 6,000 steps with STOI 8", "stage9_6k_ood", ("6",), ()),
        ("stage 8", "stage8_ood", ("6",), ("6",)),
    ],
    # the not-adopted stage 9 candidate run on with the cheap discriminator: at the
    # generator's learning rate (it stayed at chance), then at its own (discriminator.lr)
    "stage10_valid": [
        ("+ msstft_cpu at 1e-4, adv 2, feat 2, 4,000 steps", "stage10_valid", ("6",), ()),
        ("+ msstft_cpu at 1e-4, adv 4, feat 4, 4,000 steps", "stage10b_valid", ("6",), ()),
        ("+ msstft_cpu at 1e-3, adv 4, feat 4, 3,000 steps", "stage10c_valid", ("6",), ()),
        ("stage 9 candidate", "stage9_6k_valid", ("6",), ()),
        ("stage 8", "stage8_valid", ("6",), ("6",)),
    ],
    "stage10_ood": [
        ("+ msstft_cpu at 1e-3, adv 4, feat 4, 3,000 steps", "stage10c_ood", ("6",), ()),
        ("stage 9 candidate", "stage9_6k_ood", ("6",), ()),
        ("stage 8", "stage8_ood", ("6",), ("6",)),
    ],
}
TABLES.update({name: ("perceptual", sources) for name, sources in EVALUATED.items()})
PERCEPTUAL = {
    "pesq": ("PESQ", 2),
    "stoi": ("STOI", 3),
    "dnsmos_ovrl": ("DNSMOS OVRL", 2),
    "dnsmos_p808": ("DNSMOS P.808", 2),
    "mel": ("mel", 3),
    "si_sdr": ("SI-SDR dB", 2),
    "band_db": ("worst band dB", 1),
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


def perceptual_table(sources, results: Path) -> str:
    """Ours at each listed level count and Opus at each listed rate, with the scores no loss
    here trains toward (DNSMOS), the worst band's level error, the input's DNSMOS, and a last
    line of Opus-equivalent bitrates of ours at 6 kbps."""
    body, equivalent = [], None
    for label, folder, ours_kbps, opus_kbps in sources:
        summary = json.loads((results / folder / "summary.json").read_text())
        for mean in summary["means"]:
            kind, kbps = mean["codec"], f"{mean['target_kbps']:g}" if mean["target_kbps"] else ""
            if kind == "codec" and kbps in ours_kbps:
                name = f"ours, {mean['levels']} level{'s' * (mean['levels'] > 1)}"
            elif kind == "opus" and kbps in opus_kbps:
                name = "Opus"
            elif kind == "input" and not label:
                name = "input (no coding)"
            else:
                continue
            cells = [f"{label}: {name}" if label and kind == "codec" else name, kbps or "-"]
            cells += [number(mean[k], d) if k in mean else "-" for k, (_, d) in PERCEPTUAL.items()]
            body.append(cells)
        if not label:
            equivalent = summary.get("opus_equivalent_kbps", {}).get("6")
    head = ["codec", "kbps", *(name for name, _ in PERCEPTUAL.values())]
    if equivalent:
        cells = ["Opus-equivalent kbps of ours at 6", "-"]
        for key in PERCEPTUAL:
            found = equivalent.get(key)
            cells.append(str(EquivalentRate(**found)) if found else "-")
        body.append(cells)
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
        tables[name] = (
            rows_table(rows, *what) if kind == "rows" else perceptual_table(what, results)
        )
    return tables


def block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- table:{name} -->\n)(.*?)(<!-- /table:{name} -->)", re.S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the tables in the README")
    mode.add_argument("--check", action="store_true", help="exit 1 when a table is stale")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md")
    parser.add_argument("--card", type=Path, default=CARD)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    texts = {path: path.read_text() for path in (args.readme, args.card)}
    try:
        tables = render(args.results)
    except OSError as err:  # a missing results file
        print(f"error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 1
    except (ValueError, KeyError) as err:  # a foreign one
        print(f"error: {args.results}: a results file lacks {err}", file=sys.stderr)
        return 1
    for name, table in tables.items():
        places = [(path, block(name).search(text)) for path, text in texts.items()]
        places = [(path, found) for path, found in places if found is not None]
        if not places:
            print(f"error: no <!-- table:{name} --> markers in {args.readme} or {args.card}")
            return 1
        for path, found in places:
            if found.group(2) != table + "\n":
                if args.check:
                    print(f"{path}: table {name} disagrees with its results (run --write)")
                    return 1
                text = texts[path]
                texts[path] = text[: found.start(2)] + table + "\n" + text[found.end(2) :]
    if args.write:
        for path, text in texts.items():
            path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
