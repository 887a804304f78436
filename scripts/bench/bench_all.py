"""Run every benchmark and write BENCHMARKS.md or BENCHMARKS-avx2.md: machine, commands, output.

    python scripts/bench/bench_all.py [--quick] [--output FILE]

Without --output, a full run writes BENCHMARKS.md where PyTorch's kernels are AVX-512 and
BENCHMARKS-avx2.md where they are AVX2 (an AVX2-only CPU, or `make bench ISA=avx2`), so one
kind of machine never overwrites the other's figures.

Benchmarks: the quantizer against vector-quantize-pytorch, the CPU runtimes (ONNX Runtime
against PyTorch's paths on the shipped model, the frame-rate parts, EnCodec 24 kHz and DAC
16 kHz), the shipped model's streaming steps profiled per operator, the codec
against the `encodec` package (encode, decode, streaming, a 10 and a 60 minute file), an
imported DAC 16 kHz model against the `descript-audio-codec` package (encode, decode), the
frame-rate decoder beside SEANet's and the shipped model's streaming decode, training
throughput, the Snake activation, and the time `make demo` takes (full mode only). Each runs in
its own process, one after another, so none slows another (their total time is not measured
here).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: scripts/bench/ is two down


def benchmarks(quick: bool, python: str) -> list[tuple[str, list[str]]]:
    flag = ["--quick"] if quick else []
    steps = ["--steps", "6" if quick else "12"]
    return [
        (
            "Quantizer vs vector-quantize-pytorch",
            [python, "scripts/bench/bench_quantize.py", *flag],
        ),
        (
            "CPU runtimes: ONNX Runtime against PyTorch's paths, whole files and frame by frame",
            [python, "scripts/bench/bench_runtime.py", *(["--runs", "3"] if quick else [])],
        ),
        (
            "Streaming steps: where a frame's time goes in ONNX Runtime, and the weight-read floor",
            [python, "scripts/bench/profile_steps.py"],
        ),
        (
            "Codec vs the encodec package (encode, decode, streaming, long files)",
            [python, "scripts/bench/bench_codec.py", *flag, *(["--skip-long"] if quick else [])],
        ),
        (
            "DAC 16 kHz vs the descript-audio-codec package (encode, decode)",
            [python, "scripts/bench/bench_dac.py", *flag],
        ),
        (
            "Frame-rate (ConvNeXt + iSTFT) decoder vs SEANet; the shipped model's streaming",
            [python, "scripts/bench/bench_decoders.py", *flag],
        ),
        ("Training throughput on CPU", [python, "scripts/bench/bench_train.py", *steps]),
        (
            "Snake activation vs the plain expression and DAC's torch.jit.script",
            [python, "scripts/bench/bench_snake.py", "--runs", "10" if quick else "30"],
        ),
    ]


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    from codec.nn import cpu_isa

    malloc = {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "LD_PRELOAD"))}
    return [
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- CPU: {cpu}, {os.cpu_count()} cores; {platform.system()} {platform.machine()}; "
        f"PyTorch kernels {cpu_isa()}",
        f"- Python {platform.python_version()}, torch {torch.__version__}, "
        f"threads as each benchmark sets them",
        f"- allocator: glibc malloc, {'settings ' + str(malloc) if malloc else 'default settings'}",
    ]


def default_output(quick: bool) -> str:
    """BENCHMARKS.md, BENCHMARKS-avx2.md or BENCHMARKS-quick.md, by mode and kernel ISA."""
    import torch

    if quick:
        return "BENCHMARKS-quick.md"
    return (
        "BENCHMARKS-avx2.md"
        if torch.backends.cpu.get_cpu_capability() == "AVX2"
        else "BENCHMARKS.md"
    )


def run(command: list[str]) -> tuple[str, float, int]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    output = done.stdout + (f"\n[stderr]\n{done.stderr[-2000:]}" if done.returncode else "")
    return output.rstrip(), time.perf_counter() - start, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if args.output is None:
        args.output = ROOT / default_output(args.quick)
    python = (
        os.path.relpath(sys.executable, ROOT)
        if ROOT in Path(sys.executable).parents
        else sys.executable
    )
    mode = "quick" if args.quick else "full"
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{python} scripts/bench/bench_all.py{' --quick' if args.quick else ''}` "
        f"(`make bench{'-quick' if args.quick else ''}`), {mode} mode. Medians; ratios are "
        "the reference's time over ours, both measured in the same run.",
        "",
        *machine(),
        "",
    ]
    jobs = benchmarks(args.quick, python)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.quick:
            demo = ["env", f"RUN={tmp}/demo", f"PY={python}", "bash", "recipes/demo/run.sh"]
            title = "make demo (code 2 clips with speech16k beside Opus, train 400 steps)"
            jobs.append((title, demo))
        failed = _run_all(jobs, lines)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}" + (f"; {failed} benchmark(s) failed" if failed else ""))
    sys.exit(1 if failed else 0)


def _run_all(jobs, lines: list[str]) -> int:
    failed = 0
    for title, command in jobs:
        print(f"== {title}: {shlex.join(command)}", flush=True)
        output, seconds, code = run(command)
        if title.startswith("make demo"):
            output = "\n".join(line for line in output.splitlines() if "%|" not in line)
        print(output, flush=True)
        failed += code != 0
        status = "" if code == 0 else f", FAILED (exit {code})"
        lines += [
            f"## {title}",
            "",
            f"`{shlex.join(command)}` ({seconds:.0f} s{status})",
            "",
            "```",
            output,
            "```",
            "",
        ]
    return failed


if __name__ == "__main__":
    main()
