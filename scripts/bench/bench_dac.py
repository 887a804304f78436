"""DAC benchmark: an imported DAC 16 kHz model against the `descript-audio-codec` package's own,
on the same random weights.

    python scripts/bench/bench_dac.py [--runs 5] [--quick] [--seconds 10]

The reference is descript-audio-codec 1.0.0 at its published 16 kHz architecture
(codec.models.dac.DAC_16KHZ), every tensor random (tests/models/dac_reference.py: weight-norm
magnitudes, biases, Snake alphas and codebooks), loaded without audiotools. Ours is the same
.pth imported (`codec import`), saved and reloaded for inference as the CLI loads it (weight
norm folded; DAC's layers run their plain path: ONNX Runtime is the fast one, bench_runtime.py).
On 10 s of audio, torch.set_num_threads(1): whether the codes are identical (all 12 levels), the
decoded audio's largest difference, and the median encode and decode times of both, timed
alternately in the same process, with the ratio theirs / ours: wall time, and the process's
CPU time, which leaves out the time other processes hold the core (on one thread, what a loaded
machine adds to the wall time).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

SAMPLE_RATE = 16_000
# weight-norm magnitudes x 0.8: the decoded audio has a speech-like spread (std ~0.25) and is
# off tanh's rails; at 1.0 the random activations grow to hundreds and most samples saturate
GAIN = 0.8


def reference_helpers():
    """tests/models/dac_reference.py: random_dac, save_pth, reference_encode, reference_decode."""
    import importlib.util
    import warnings

    if importlib.util.find_spec("dac") is None:
        raise SystemExit(
            "bench_dac: no DAC reference installed: pip install --no-deps "
            "descript-audio-codec==1.0.0 (make install does)"
        )
    warnings.filterwarnings("ignore", category=FutureWarning)  # DAC's old-style weight_norm
    from reference_models import reference_module

    return reference_module("dac_reference")


def theirs_model(helpers):
    """DAC's 16 kHz model (descript-audio-codec 1.0.0) with every tensor random."""
    from codec.models.dac import DAC_16KHZ

    return helpers.random_dac(DAC_16KHZ | {"sample_rate": SAMPLE_RATE}, seed=0, gain=GAIN)


def ours_model(helpers, theirs):
    """The same weights imported, saved, and reloaded for inference, as the CLI runs them."""
    from codec.models import Codec
    from codec.models.dac import import_dac

    with tempfile.TemporaryDirectory() as folder:
        pth = helpers.save_pth(theirs, Path(folder) / "dac_16khz-random.pth")
        imported = import_dac(pth).save_pretrained(Path(folder) / "model")
        return Codec.from_pretrained(imported)


def interleaved_clocks(fns: dict, runs: int, warmup: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each callable, timed in turn within every round. On one
    thread the process's CPU time leaves out the time other processes hold the core, which on
    a loaded machine makes up much of the wall time."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
        for name, t in times.items()
    }


def versus_dac(runs: int, warmup: int, seconds: float) -> list[tuple[str, tuple, tuple]]:
    helpers = reference_helpers()
    theirs = theirs_model(helpers)
    ours = ours_model(helpers, theirs)
    wav = torch.randn(1, 1, int(SAMPLE_RATE * seconds), generator=torch.Generator().manual_seed(0))
    wav = wav * 0.1
    with torch.inference_mode():
        codes = ours.encode(wav)
        expected = helpers.reference_encode(theirs, wav)
        same = torch.equal(codes[:, 0], expected)
        audio = helpers.reference_decode(theirs, expected)
        decoded = ours.decode(codes)[..., : audio.shape[-1]]
        error = (decoded - audio).abs().max().item()
    print(
        f"codes {tuple(codes.shape)} identical to DAC's: {same}; decoded audio max difference "
        f"{error:.1e} (audio std {audio.std():.2f})"
    )
    cases = {
        "theirs encode": lambda: helpers.reference_encode(theirs, wav),
        "ours encode": lambda: ours.encode(wav),
        "theirs decode": lambda: helpers.reference_decode(theirs, expected),
        "ours decode": lambda: ours.decode(codes),
    }
    with torch.inference_mode():
        t = interleaved_clocks(cases, runs, warmup)
    return [
        ("encode", t["theirs encode"], t["ours encode"]),
        ("decode", t["theirs decode"], t["ours decode"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="3 runs after 1 warm-up")
    args = parser.parse_args()
    runs, warmup = (3, 1) if args.quick else (args.runs, 2)
    from codec.nn import cpu_isa

    torch.set_num_threads(1)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, kernels {cpu_isa()}, "
        f"torch {torch.__version__}, 1 thread, glibc malloc (default settings); "
        f"medians of {runs} runs after {warmup} warm-up, ours and DAC's timed alternately; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"DAC 16 kHz (descript-audio-codec 1.0.0), random weights imported, {args.seconds:g} s:")
    rows = versus_dac(runs, warmup, args.seconds)
    print(f"{'':<8} {'wall time':^27}   {'CPU time of the process':^27}".rstrip())
    print((f"{'float32':<8}" + f" {'DAC s':>8} {'ours s':>8} {'speed-up':>9}  " * 2).rstrip())
    for name, theirs, ours in rows:
        cells = (f" {a:>8.3f} {b:>8.3f} {a / b:>8.2f}x  " for a, b in zip(theirs, ours))
        print((f"{name:<8}" + "".join(cells)).rstrip())


if __name__ == "__main__":
    main()
