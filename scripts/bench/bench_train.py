"""Training throughput on this machine: audio seconds trained per wall-clock second.

    python scripts/bench/bench_train.py [--steps N] [--threads T]

Trains the demo's small 16 kHz codec and the speech16k CPU configuration for a few steps each on
the generated demo corpus (in a temp folder), with and without the MS-STFT discriminator, and
prints the median step time and audio seconds per second over the steps after warm-up.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import torch

from codec.train import Trainer, compose_config
from codec.train.data import make_demo_corpus

CASES = {
    "demo model, no discriminator (make demo)": ["experiment=demo"],
    "demo model + MS-STFT discriminator": ["experiment=demo", "discriminator=msstft"],
    "speech16k CPU configuration": ["experiment=speech16k_cpu", "data.num_workers=0"],
}


def step_times(overrides: list[str], steps: int, corpus: Path, run_dir: Path):
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
        start = time.perf_counter()
        solver.train_step(batch, step, log=lambda record: None)
        times.append(time.perf_counter() - start)
    return times, cfg.data.batch_size * cfg.data.segment_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.steps < 3:
        parser.error("--steps must be at least 3 (the first two are warm-up)")
    torch.set_num_threads(args.threads)
    print(f"training throughput, {args.threads} threads, median of {args.steps - 2} steps")
    print(f"{'case':<44} {'batch':>14} {'step s':>8} {'audio s/s':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = make_demo_corpus(Path(tmp) / "corpus", count=40, seconds=2.0, sample_rate=16000)
        for index, (name, overrides) in enumerate(CASES.items()):
            run_dir = Path(tmp) / f"run{index}"
            times, seconds = step_times(overrides, args.steps, corpus, run_dir)
            median = statistics.median(times[2:])
            print(f"{name:<44} {seconds:>12.1f} s {median:>8.3f} {seconds / median:>10.1f}")


if __name__ == "__main__":
    main()
