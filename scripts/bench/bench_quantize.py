"""Quantizer benchmark: codec.quantize against vector-quantize-pytorch, side by side in one run.

    python scripts/bench/bench_quantize.py [--threads 2] [--runs 15] [--quick] [--markdown]

Same options on both sides: GroupedResidualVQ(dim=256, groups=2, num_quantizers=8,
codebook_size=1024), EMA decay 0.99, dead codes below 2, straight-through estimator (the
reference's rotation_trick=False), no dropout; input (8, 750, 256). Prints medians, the ratio
theirs / ours, and each time as a multiple of the fp32 matmul limit: the time the distance
matmuls alone take at the GFLOP/s this machine reaches on one large fp32 matmul.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import subprocess
import sys

import torch
from timing import interleaved

from codec.nn import cpu_isa, native_bf16

OPTIONS = dict(dim=256, groups=2, num_quantizers=8, codebook_size=1024)
EMA = dict(decay=0.99, threshold_ema_dead_code=2)


def matmul_gflops(runs: int) -> float:
    """Best fp32 GFLOP/s of the search's matmuls, (2 x 6000 x 128) @ (2 x 128 x 1024), over row
    chunk sizes (one unchunked product is memory-bound and slower)."""
    a, b = torch.randn(2, 6000, 128), torch.randn(2, 128, 1024)
    best = 0.0

    def chunked(chunk: int, out: torch.Tensor) -> None:
        for start in range(0, 6000, chunk):
            part = a[:, start : start + chunk]
            torch.bmm(part, b, out=out[:, : part.shape[1]])

    for chunk in (256, 512, 1024, 6000):
        out = torch.empty(2, chunk, 1024)
        seconds = interleaved({"mm": functools.partial(chunked, chunk, out)}, runs)["mm"]
        best = max(best, 2 * 2 * 6000 * 128 * 1024 / seconds / 1e9)
    return best


def level0_agreement_with_fp64(ours, theirs, x) -> tuple[float, float]:
    """Fraction of first-level codes equal to an exact fp64 nearest-code search, ours and theirs
    (later levels inherit any difference through the residual)."""
    codebooks = ours.codebooks[:, 0].double()  # (g, c, d)
    groups = x.double().reshape(-1, 2, 128).transpose(0, 1)  # (g, N, d)
    truth = torch.cdist(groups, codebooks).argmin(-1)  # (g, N)
    with torch.no_grad():
        mine = ours(x)[1][..., 0].reshape(2, -1)
        ref = theirs(x)[1][..., 0].reshape(2, -1)
    return (mine == truth).float().mean().item(), (ref == truth).float().mean().item()


def make_ours(**extra):
    from codec.quantize import GroupedResidualVQ

    return GroupedResidualVQ(**OPTIONS, **EMA, **extra)


def make_theirs():
    from vector_quantize_pytorch import GroupedResidualVQ

    return GroupedResidualVQ(**OPTIONS, **EMA, rotation_trick=False)


def eval_step(q, x):
    def run():
        with torch.no_grad():
            return q(x)

    return run


def train_step(q, x):
    def run():
        xi = x.detach().requires_grad_()
        out, _, losses = q(xi)
        (out.square().mean() + losses.sum()).backward()

    return run


def share_codebooks(ours, theirs) -> None:
    for g, rvq in enumerate(theirs.rvqs):
        for level, layer in enumerate(rvq.layers):
            layer._codebook.embed.data.copy_(ours.codebooks[g, level].detach()[None])


PEAK_MEMORY = """
import torch
torch.set_num_threads({threads})
from codec.quantize import GroupedResidualVQ
q = GroupedResidualVQ(dim=256, groups=2, num_quantizers={levels}, codebook_size=65536).eval()
x = torch.randn(8, 750, 256)

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024

open("/proc/self/clear_refs", "w").write("5")  # reset the peak to the current size
before = status("VmRSS")
with torch.no_grad():
    q(x)
print(status("VmHWM") - before)
"""


def forward_peak_mib(threads: int, levels: int) -> float:
    """Peak resident memory added by one eval forward (MiB), in a fresh interpreter."""
    code = PEAK_MEMORY.format(threads=threads, levels=levels)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="5 runs, smaller memory check")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    runs = 5 if args.quick else args.runs
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(8, 750, 256)
    gflops = matmul_gflops(runs)
    search_flop = 2 * 8 * 750 * 256 * 1024 * 8  # rows x dim x codes x levels, both groups
    limit_ms = search_flop / (gflops * 1e9) * 1e3

    ours, theirs = make_ours().eval(), make_theirs().eval()
    share_codebooks(ours, theirs)
    models = {"theirs": theirs, "ours": ours}
    # emulated bf16 (AVX2) runs a matmul some 100x slower than fp32: those rows would take
    # most of an hour and say nothing a user of such a CPU would choose
    if native_bf16():
        models["fast"] = make_ours(search_precision="bfloat16").eval()
        models["fast"].load_state_dict(ours.state_dict())
    agree_fast = None
    with torch.no_grad():
        exact_codes = ours(x)[1]
        agree_theirs = (exact_codes == theirs(x)[1]).float().mean().item()
        if "fast" in models:
            agree_fast = (exact_codes == models["fast"](x)[1]).float().mean().item()
    exact_mine, exact_theirs = level0_agreement_with_fp64(ours, theirs, x)

    cases = {
        "eval forward": (eval_step, "exact fp32", "bf16 search + fp32 re-rank"),
        "train forward+backward": (train_step, "exact fp32", "bf16 search"),
    }
    rows = []
    for case, (step, exact, fast) in cases.items():
        for model in models.values():
            model.train(case.startswith("train"))
        ms = {
            k: v * 1e3
            for k, v in interleaved({k: step(m, x) for k, m in models.items()}, runs).items()
        }
        rows.append((f"{case}, {exact}", ms["theirs"], ms["ours"]))
        if "fast" in ms:
            rows.append((f"{case}, {fast}", ms["theirs"], ms["fast"]))

    levels = 1 if args.quick else 2
    peak = forward_peak_mib(args.threads, levels)

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, torch.set_num_threads({args.threads}), "
        f"vector-quantize-pytorch {_version('vector-quantize-pytorch')}, "
        f"allocator: glibc malloc, MALLOC_* env: "
        f"{ {k: v for k, v in os.environ.items() if k.startswith('MALLOC')} or 'default' }"
    )
    print(
        f"config: GroupedResidualVQ{OPTIONS} decay 0.99, dead codes < 2, input (8, 750, 256), "
        f"median of {runs} runs"
    )
    print(
        f"fp32 matmul: {gflops:.0f} GFLOP/s -> distance matmuls alone need {limit_ms:.0f} ms "
        f"({search_flop / 1e9:.1f} GFLOP)"
    )
    print(
        f"codes equal to vector-quantize-pytorch on a shared codebook: {agree_theirs:.4%} of "
        f"{exact_codes.numel()} codes; "
        + (
            f"bf16 search equal to exact: {agree_fast:.4%}"
            if agree_fast is not None
            else f"bf16 rows skipped: this CPU's bf16 is emulated ({cpu_isa()})"
        )
    )
    print(
        f"first-level codes equal to an fp64 search: ours {exact_mine:.4%}, "
        f"vector-quantize-pytorch {exact_theirs:.4%}"
    )
    header = ["case", "vector-quantize-pytorch ms", "ours ms", "speed-up", "ours / matmul limit"]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
    else:
        print(f"{header[0]:<42} {header[1]:>26} {header[2]:>9} {header[3]:>9} {header[4]:>20}")
    for name, theirs_ms, ours_ms in rows:
        cells = [
            name,
            f"{theirs_ms:.0f}",
            f"{ours_ms:.0f}",
            f"{theirs_ms / ours_ms:.2f}x",
            f"{ours_ms / limit_ms:.2f}x",
        ]
        if args.markdown:
            print("| " + " | ".join(cells) + " |")
        else:
            print(f"{cells[0]:<42} {cells[1]:>26} {cells[2]:>9} {cells[3]:>9} {cells[4]:>20}")
    codebook_mib = levels * 2 * 65536 * 128 * 4 / 2**20
    print(
        f"memory: one eval forward with a 65,536-code codebook ({levels} levels x 2 groups, "
        f"{codebook_mib:.0f} MiB of codes) adds {peak:.0f} MiB of peak resident memory; "
        f"an unchunked score matrix alone would be {12000 * 65536 * 4 / 2**20:.0f} MiB"
    )


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
