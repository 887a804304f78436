"""The GPU one-shot's results (scripts/gpu_oneshot.sh) as one markdown page and a figure:

    python scripts/gpu_report.py validate RUN_DIR > final_valid.json
    python scripts/gpu_report.py write --work WORK --out OUT --corpus CORPUS

`validate` scores a training run's latest checkpoint with the trainer's own validation (the
run's held-out files, weight-EMA model): the one-shot stops its training by the clock
(SIGTERM), which writes a checkpoint but validates nothing. `write` reads what the one-shot
left in WORK (phases.tsv, checks.log, bench.jsonl, the run folder train/, final_valid.json)
and writes OUT/gpu_results.md and OUT/training.png.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

import yaml

KBPS = re.compile(r"valid_(mel|si_sdr)@([0-9.]+)kbps")


def final_validation(run_dir: Path) -> dict:
    """{"step": N, "valid_mel@...": ..., ...} of the run's newest checkpoint."""
    from omegaconf import OmegaConf

    from codec.train import Trainer
    from codec.train.checkpoint import latest_checkpoint

    cfg = OmegaConf.load(run_dir / "config.yaml")
    trainer = Trainer(cfg)
    state = latest_checkpoint(run_dir)
    if state is None:
        raise SystemExit(f"{run_dir}: no checkpoint to validate")
    trainer.loop.load_state(state)
    return {"step": trainer.step} | trainer.solver.validate(trainer.step, None)


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_rate(record: dict) -> dict[float, dict[str, float]]:
    """valid_mel@6kbps-style keys -> {6.0: {"mel": ..., "si_sdr": ...}}, rates ascending."""
    rates: dict[float, dict[str, float]] = {}
    for key, value in record.items():
        match = KBPS.fullmatch(key)
        if match:
            rates.setdefault(float(match[2]), {})[match[1]] = value
    return dict(sorted(rates.items()))


def steady_rate(steps: list[dict], valid_steps: set[int], units: float) -> float | None:
    """Median audio seconds per second between consecutive step logs with no validation
    between them, `units` audio seconds a step (the loop's own figure averages from the
    start, the first step included)."""
    rates = []
    for a, b in zip(steps, steps[1:]):
        if any(a["step"] < v <= b["step"] for v in valid_steps) or b["time"] <= a["time"]:
            continue
        rates.append((b["step"] - a["step"]) * units / (b["time"] - a["time"]))
    return statistics.median(rates) if rates else None


def section_tests(work: Path) -> list[str]:
    log = (work / "pytest.log").read_text() if (work / "pytest.log").is_file() else ""
    summary = [line for line in log.splitlines() if re.search(r"\d+ (passed|failed|skipped)", line)]
    failed = [line for line in log.splitlines() if line.startswith(("FAILED", "ERROR"))]
    lines = ["## CUDA tests (`pytest -m cuda tests/test_cuda.py`)", ""]
    lines.append(
        f"Result: `{summary[-1].strip('= ') if summary else 'no summary (see checks.log)'}`"
    )
    lines += [f"- `{line}`" for line in failed]
    return lines + [""]


def section_bench(work: Path) -> list[str]:
    records = read_jsonl(work / "bench.jsonl")
    lines = ["## Training throughput (`scripts/bench/bench_train.py`)", ""]
    if not records:
        return lines + ["No benchmark finished (see bench.log).", ""]
    lines += [
        f"On {records[0]['device']}, {records[0]['steps']} steps per case (median of the last "
        f"{records[0]['steps'] - 2}), demo corpus"
        + (
            "; PyTorch's default TF32 settings (cuDNN convolutions in TF32, matrix products "
            "in float32)"
            if "cuda" in records[0]["device"]
            else ""
        )
        + ". The speech16k GPU case runs its MS-STFT discriminator from the first step; the "
        "first step includes k-means initialisation and, with compile, compilation.",
        "",
        "| case | precision | compile | batch audio s | first step s | step s | audio s/s "
        "| peak GiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['label']} | {r['precision']} | {'yes' if r['compile'] else 'no'} "
            f"| {r['batch_seconds']:g} | {r['first_step_s']:.2f} | {r['median_step_s']:.4f} "
            f"| {r['audio_seconds_per_second']:.1f} | {r['peak_gib']:.2f} |"
        )
    return lines + [""]


def section_training(work: Path, out: Path, corpus: Path) -> list[str]:
    run = work / "train"
    records = read_jsonl(run / "metrics.jsonl")
    lines = ["## speech16k GPU configuration on real speech", ""]
    if not records:
        return lines + ["The training run logged nothing (see train.log).", ""]
    packed = corpus / "PACKED.txt"
    corpus = "?"
    if packed.is_file():  # its first line: "# N of the M training files of SRC, ...: columns"
        corpus = packed.read_text().splitlines()[0].lstrip("# ").rsplit(": ", 1)[0]
    held_out = run / "heldout.txt"
    held = len(held_out.read_text().split()) if held_out.is_file() else "?"
    start = next((r for r in records if r.get("event") == "start"), {})
    steps = [r for r in records if "mel" in r and "time" in r]
    valids = [r for r in records if r.get("event") == "valid"]
    final = work / "final_valid.json"
    final = json.loads(final.read_text()) if final.is_file() else None
    last = steps[-1] if steps else {}
    cfg = (
        yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
    )
    units = cfg["data"]["batch_size"] * cfg["data"]["segment_seconds"] if cfg else None
    steady = steady_rate(steps, {r["step"] for r in valids}, units) if units else None
    stopped = next((r for r in records if r.get("event") == "stopped"), None)
    lines += [
        f"- Corpus: {corpus}; the run held out {held} of those files for its validation.",
        f"- Parameters: {start.get('parameters', '?'):,}"
        if isinstance(start.get("parameters"), int)
        else "- Parameters: ?",
        f"- Steps trained: {(stopped or last).get('step', 0)} "
        f"({'stopped by the clock' if stopped else 'done'}), "
        f"{(stopped or last).get('time', 0) - start.get('time', 0):.0f} s from the start.",
        f"- Throughput: {last.get('audio_seconds_per_second', float('nan')):.1f} audio s/s "
        "averaged from the start (data loading, k-means and validation included)"
        + (f", {steady:.1f} audio s/s between validations." if steady else "."),
        f"- Last step losses: mel {last.get('mel', float('nan')):.3f}, "
        f"l1 {last.get('l1', float('nan')):.4f}, commitment "
        f"{last.get('commitment', float('nan')):.4f}"
        + (f", discriminator {last['d_loss']:.3f}." if "d_loss" in last else "."),
        "",
    ]
    table = [(r["step"], by_rate(r)) for r in valids if by_rate(r)]
    if final and by_rate(final) and (not table or table[-1][0] != final["step"]):
        table.append((final["step"], by_rate(final)))
    if table:
        rates = list(table[-1][1])
        lines += [
            "Validation (the trainer's: held-out files, first "
            "`trainer.valid_seconds` of each, weight-EMA model), mel distance / SI-SDR dB:",
            "",
            "| step | " + " | ".join(f"{kbps:g} kbps" for kbps in rates) + " |",
            "|---|" + "---|" * len(rates),
        ]
        for step, scores in table:
            cells = [
                f"{scores[k]['mel']:.3f} / {scores[k]['si_sdr']:.2f}" if k in scores else "-"
                for k in rates
            ]
            lines.append(f"| {step} | " + " | ".join(cells) + " |")
        lines.append("")
    if plot(steps, table, out / "training.png"):
        lines += ["![training](training.png)", ""]
    return lines


def plot(steps: list[dict], table: list, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if not steps:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    x = [r["step"] for r in steps]
    left.plot(x, [r["mel"] for r in steps], label="mel (train)")
    if any("d_loss" in r for r in steps):
        d = [(r["step"], r["d_loss"]) for r in steps if "d_loss" in r]
        left.plot(*zip(*d), label="discriminator")
    left.set_xlabel("step")
    left.legend()
    left.set_title("training losses")
    if table:
        for kbps in table[-1][1]:
            points = [(step, s[kbps]["mel"]) for step, s in table if kbps in s]
            right.plot(*zip(*points), marker="o", label=f"{kbps:g} kbps")
        right.legend()
    right.set_xlabel("step")
    right.set_title("validation mel distance")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def section_machine(work: Path) -> list[str]:
    lines = ["## Machine and phases", ""]
    versions = work / "versions.txt"
    if versions.is_file():
        lines += [f"- {line}" for line in versions.read_text().splitlines() if line.strip()]
    phases = work / "phases.tsv"
    if phases.is_file():
        lines += ["", "| phase | exit status | wall s |", "|---|---|---|"]
        for row in phases.read_text().splitlines():
            name, status, seconds = row.split("\t")
            lines.append(f"| {name} | {status} | {seconds} |")
    return lines + [""]


def write(work: Path, out: Path, corpus: Path) -> Path:
    lines = [
        "# GPU one-shot results",
        "",
        "Written by `scripts/gpu_oneshot.sh` (logs beside this file: checks.log, bench.log, "
        "bench.jsonl, train.log, metrics.jsonl, config.yaml).",
        "",
        *section_machine(work),
        *section_tests(work),
        *section_bench(work),
        *section_training(work, out, corpus),
    ]
    target = out / "gpu_results.md"
    target.write_text("\n".join(lines) + "\n")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="score a run's newest checkpoint")
    validate.add_argument("run_dir", type=Path)
    report = commands.add_parser("write", help="gpu_results.md and training.png")
    report.add_argument("--work", type=Path, required=True)
    report.add_argument("--out", type=Path, required=True)
    report.add_argument("--corpus", type=Path, required=True, help="the packed corpus trained on")
    args = parser.parse_args()
    if args.command == "validate":
        json.dump(final_validation(args.run_dir), sys.stdout)
        print()
    else:
        print(write(args.work, args.out, args.corpus))


if __name__ == "__main__":
    main()
