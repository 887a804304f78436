"""Codec benchmarks: ours against the `encodec` package at the same architecture, streaming,
and encoding long files.

    python scripts/bench/bench_codec.py [--runs 7] [--quick] [--skip-long]

1. The `encodec` package's 24 kHz model with every tensor random, and the same weights
   imported (`codec import`) and loaded as the CLI loads them; 10 s of audio at 6 kbps,
   torch.set_num_threads(1): whether the codes are identical, median encode and decode times
   and the ratio theirs / ours, after this core's rates (matmul and memory, LSTM, ELU).
2. Causal streaming decode, one frame (one hop, 13.3 ms) at a time, 1 thread: real-time factor.
3. `codec encode` on a 10-minute and a 60-minute 24 kHz file: wall time and peak resident
   memory of the process (--quick: 2 and 6 minutes).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from timing import interleaved, streaming_real_time


def theirs_model():
    """The `encodec` package's 24 kHz model with every tensor random
    (tests/models/encodec_reference.py), at 6 kbps."""
    import warnings

    from reference_models import reference_module

    random_encodec = reference_module("encodec_reference").random_encodec

    warnings.filterwarnings("ignore", category=FutureWarning)
    model = random_encodec(24000, small=False, seed=0)
    model.set_target_bandwidth(6.0)
    return model


def ours_model(theirs):
    """The same weights imported (codec import), saved, and reloaded for inference, as the CLI
    runs them (weight norm folded, converted for the CPU)."""
    from codec.models import Codec
    from codec.models.encodec import import_encodec

    with tempfile.TemporaryDirectory() as folder:
        th = Path(folder) / "encodec_24khz-random.th"
        torch.save(theirs.state_dict(), th)
        imported = import_encodec(th).save_pretrained(Path(folder) / "model")
        return Codec.from_pretrained(imported)


def versus_encodec(runs: int) -> list[tuple[str, float, float]]:
    torch.set_num_threads(1)
    wav = torch.randn(1, 1, 240_000, generator=torch.Generator().manual_seed(0)) * 0.1
    theirs = theirs_model()
    ours, bf16 = ours_model(theirs), ours_model(theirs)
    bf16.precision = "bfloat16"
    with torch.inference_mode():
        codes = ours.encode(wav, bandwidth=6)
        frames = theirs.encode(wav)
        assert codes.shape[2] == frames[0][0].shape[1] == 8
        same = (codes[:, 0] == frames[0][0]).float().mean().item()
        error = (ours.decode(codes) - theirs.decode(frames)).abs().max().item()
    # a share below 100% is an fp32 near-tie in the nearest-code search (the input is seeded)
    print(f"codes equal to encodec's: {same:.2%}; decoded audio max difference {error:.1e}")
    from codec.nn import native_bf16

    cases = {
        "theirs encode": lambda: theirs.encode(wav),
        "ours encode": lambda: ours.encode(wav, bandwidth=6),
        "theirs decode": lambda: theirs.decode(frames),
        "ours decode": lambda: ours.decode(codes),
    }
    if native_bf16():  # elsewhere bf16 is emulated, 10x+ slower, and the model runs fp32
        cases["ours bf16 encode"] = lambda: bf16.encode(wav, bandwidth=6)
        cases["ours bf16 decode"] = lambda: bf16.decode(codes)
    with torch.inference_mode():
        t = interleaved(cases, runs)
    rows = [
        ("encode, ours float32", t["theirs encode"], t["ours encode"]),
        ("decode, ours float32", t["theirs decode"], t["ours decode"]),
    ]
    if native_bf16():
        with torch.inference_mode():
            agree = (bf16.encode(wav, bandwidth=6) == codes).float().mean().item()
        print(f"bfloat16 codes equal to float32 codes: {agree:.2%}")
        rows += [
            ("encode, ours bfloat16 option", t["theirs encode"], t["ours bf16 encode"]),
            ("decode, ours bfloat16 option", t["theirs decode"], t["ours bf16 decode"]),
        ]
    else:
        print("bfloat16 rows skipped: this CPU has no native bf16")
    return rows


def machine_ceilings() -> str:
    """This core's rates, 1 thread: its best fp32 matmul rate, its memory read rate, the
    bottleneck LSTM's time (the same oneDNN kernel on both sides) and PyTorch's ELU rate."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    big = torch.randn(16 * 2**20)  # 64 MiB: beyond the last-level cache
    lstm = torch.nn.LSTM(512, 512, 2, batch_first=True).eval()
    seq = torch.randn(1, 750, 512)  # 10 s at 75 frames a second
    act = torch.randn(240_000 * 32)  # the outer layers' activations for 10 s
    with torch.inference_mode():
        t = interleaved(
            {
                "mm": lambda: a @ b,
                "sum": lambda: big.sum(),
                "lstm": lambda: lstm(seq),
                "elu": lambda: torch.nn.functional.elu_(act),
            },
            5,
        )
    return (
        f"1-thread figures: fp32 matmul {2 * 2048**3 / t['mm'] / 1e9:.1f} GFLOP/s (2048^3); "
        f"memory read {big.numel() * 4 / t['sum'] / 1e9:.1f} GB/s (a sum over 64 MiB); "
        f"2 x 512 LSTM over 750 steps {t['lstm']:.3f} s; ELU {act.numel() / t['elu'] / 1e9:.2f} "
        "G values/s"
    )


def streaming_rtf(seconds: float = 10.0) -> float:
    """Through the layers' streaming path (ONNX Runtime's steps: bench_runtime.py)."""
    torch.set_num_threads(1)
    model = ours_model(theirs_model())
    codes = model.encode(torch.randn(1, 1, int(24000 * seconds)) * 0.1, bandwidth=6)
    return streaming_real_time(model, codes)


def long_file(minutes: float, model_dir: Path, folder: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of `codec encode` on a `minutes`-long 24 kHz file."""
    path = folder / f"long_{minutes:g}min.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", 24000, 1, subtype="PCM_16") as handle:
        for _ in range(int(minutes)):
            handle.write((rng.standard_normal(24000 * 60) * 0.05).astype(np.float32))
    args = ["encode", str(path), "-m", str(model_dir), "-b", "6", "--force", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_LAUNCHER, *args],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    peak = int(done.stderr.strip().splitlines()[-1].split()[1]) / 1024
    path.unlink()
    return elapsed, peak


# Runs `codec ARGS...` and prints the process's own peak resident memory (VmHWM, kB) last on
# stderr. getrusage(RUSAGE_CHILDREN) is no good here: a child forked from this (large) benchmark
# process inherits the parent's high-water mark across exec, so it reads the parent's size.
PEAK_RSS_LAUNCHER = """
import sys
from codec.cli import main
code = 1
try:
    code = main(sys.argv[1:])
finally:
    peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]
    print(peak.strip(), file=sys.stderr)
sys.exit(code)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-long", action="store_true", help="skip the long-file encodes")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    from codec.nn import cpu_isa

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, kernels {cpu_isa()}, "
        f"torch {torch.__version__}, 1 thread, glibc malloc (default settings); "
        f"medians of {runs} runs"
    )
    torch.set_num_threads(1)
    print(machine_ceilings())
    print("EnCodec 24 kHz, random weights imported, causal, 10 s of audio at 6 kbps:")
    rows = versus_encodec(runs)
    print(f"{'case (encodec always float32)':<32} {'encodec s':>10} {'ours s':>8} {'speed-up':>9}")
    for name, theirs_s, ours_s in rows:
        print(f"{name:<32} {theirs_s:>10.3f} {ours_s:>8.3f} {theirs_s / ours_s:>8.2f}x")
    print(f"streaming decode, one frame at a time, the layers: {streaming_rtf():.1f}x real time")
    if args.skip_long:
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        torch.manual_seed(0)
        model_dir = ours_model(theirs_model()).save_pretrained(folder / "model")
        print("codec encode -b 6 on one long 24 kHz file (1 thread):")
        results = {}
        for minutes in (2, 6) if args.quick else (10, 60):
            seconds, peak = long_file(minutes, model_dir, folder)
            results[minutes] = seconds
            print(
                f"  {minutes:>3} min: {seconds:7.1f} s ({minutes * 60 / seconds:5.1f}x real time),"
                f" peak resident memory {peak:.0f} MiB"
            )
        short, long = sorted(results)
        print(
            f"  time ratio {results[long] / results[short]:.2f} for a {long / short:g}x longer file"
        )


if __name__ == "__main__":
    main()
