"""Training throughput: audio seconds trained per wall-clock second.

    python scripts/bench/bench_train.py [--steps N] [--threads T] [--device cuda]
        [--precision float32|bfloat16] [--compile] [--cases NAME ...] [--json FILE]
        [--override KEY=VALUE ...]

Trains each case's configuration for a few steps on the generated demo corpus (in a temp
folder) and prints the first step's time (k-means initialisation, and compilation with
--compile), the median and mean step time over the steps after two of warm-up, audio seconds
per second at the mean (a discriminator updated every k-th step makes the mean the figure:
--steps 14 leaves 12 steps, a whole number of k = 4 cycles), and on a GPU the peak memory.
The default cases are the CPU ones (the demo's small 16 kHz codec with and without the MS-STFT
discriminator, the speech16k CPU configuration); `--cases speech16k_gpu speech16k_istft`
measures the speech16k GPU configuration (its discriminator on from the first step) and the
frame-rate (STFT / inverse-STFT) experiment; `--cases speech16k_cpu speech16k_cpu_msstft
speech16k_cpu_msstft_cpu` the cost of MS-STFT discriminators on the speech16k CPU
configuration. `--precision` and `--compile` set trainer.precision and trainer.compile for
every case; `--override` adds Hydra overrides to every case (a dry run: `--override
data.batch_size=2 data.segment_seconds=0.25`); `--json` appends one JSON record per case to
FILE.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from codec.nn.inference import cpu_isa
from codec.train import Trainer, compose_config
from codec.train.synthetic import make_demo_corpus

CASES = {  # name: (what it is, Hydra overrides)
    "demo": ("demo model, no discriminator (make demo)", ["experiment=demo"]),
    "demo_msstft": (
        "demo model + MS-STFT discriminator",
        ["experiment=demo", "discriminator=msstft"],
    ),
    "speech16k_cpu": (
        "speech16k CPU configuration",
        ["experiment=speech16k_cpu", "data.num_workers=0"],
    ),
    "speech16k_cpu_msstft": (
        "speech16k CPU configuration + MS-STFT",
        ["experiment=speech16k_cpu", "discriminator=msstft", "data.num_workers=0"],
    ),
    "speech16k_cpu_msstft_cpu": (
        "speech16k CPU configuration + msstft_cpu (mean of 4)",
        ["experiment=speech16k_cpu", "discriminator=msstft_cpu", "data.num_workers=0"],
    ),
    "speech16k_gpu": (
        "speech16k GPU configuration + MS-STFT",
        ["experiment=speech16k_gpu", "discriminator.start_step=0", "data.num_workers=0"],
    ),
    "speech16k_istft": (
        "speech16k frame-rate (STFT/iSTFT) experiment",
        ["experiment=speech16k_cpu_istft", "data.num_workers=0"],
    ),
}
DEFAULT_CASES = ["demo", "demo_msstft", "speech16k_cpu"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_times(overrides: list[str], steps: int, corpus: Path, run_dir: Path):
    """-> (seconds of each step, audio seconds per step, the device)"""
    cfg = compose_config(
        [
            *overrides,
            f"data.root={corpus}",
            f"run_dir={run_dir}",
            "trainer.progress=false",
            "trainer.tensorboard=false",
            f"trainer.threads={torch.get_num_threads()}",  # configs may set their own
        ],
        job_name="bench",
    )
    solver = Trainer(cfg).solver
    batches = (batch for epoch in itertools.count() for batch in solver.epoch_batches(epoch))
    times = []
    for step in range(steps):
        batch = next(batches)
        synchronize(solver.device)
        start = time.perf_counter()
        solver.train_step(batch, step, log=lambda record: None)
        synchronize(solver.device)
        times.append(time.perf_counter() - start)
    return times, cfg.data.batch_size * cfg.data.segment_seconds, solver.device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--compile", action="store_true", help="torch.compile (trainer.compile)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=DEFAULT_CASES)
    parser.add_argument("--override", nargs="+", default=[], help="Hydra overrides for all cases")
    parser.add_argument("--json", type=Path, help="append one JSON record per case to this file")
    args = parser.parse_args()
    if args.steps < 3:
        parser.error("--steps must be at least 3 (the first two are warm-up)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    where = args.device
    if args.device.startswith("cuda"):
        where = f"{torch.cuda.get_device_name(torch.device(args.device))} ({args.device})"
    print(
        f"training throughput on {where} (CPU ISA {cpu_isa()}), {args.precision}"
        f"{' + compile' if args.compile else ''}, {args.threads} threads,"
        f" median of {args.steps - 2} steps after 2 of warm-up"
        + (f"; overrides: {' '.join(args.override)}" if args.override else "")
    )
    print(
        f"{'case':<52} {'batch':>9} {'first s':>8} {'step s':>8} {'mean s':>8} {'audio s/s':>10}"
        f" {'peak GiB':>9}"
    )
    settings = [
        f"trainer.device={args.device}",
        f"trainer.precision={args.precision}",
        f"trainer.compile={str(args.compile).lower()}",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = make_demo_corpus(Path(tmp) / "corpus", count=40, seconds=2.0, sample_rate=16000)
        for name in args.cases:
            label, overrides = CASES[name]
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(torch.device(args.device))
            run_dir = Path(tmp) / f"run_{name}"
            times, seconds, device = step_times(
                [*overrides, *settings, *args.override], args.steps, corpus, run_dir
            )
            median, mean = statistics.median(times[2:]), statistics.mean(times[2:])
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0
            print(
                f"{label:<52} {seconds:>7.1f} s {times[0]:>8.2f} {median:>8.3f} {mean:>8.3f} "
                f"{seconds / mean:>10.1f} {f'{peak:.2f}' if peak else '-':>9}",
                flush=True,
            )
            if args.json:
                record = {
                    "case": name,
                    "label": label,
                    "device": where,
                    "precision": args.precision,
                    "compile": args.compile,
                    "batch_seconds": seconds,
                    "first_step_s": times[0],
                    "median_step_s": median,
                    "mean_step_s": mean,
                    "audio_seconds_per_second": seconds / mean,
                    "peak_gib": peak,
                    "steps": args.steps,
                    "overrides": args.override,
                }
                with open(args.json, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
            if args.compile:
                torch._dynamo.reset()  # each case's compiled graphs, freed before the next


if __name__ == "__main__":
    main()
