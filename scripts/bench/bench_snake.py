"""Snake micro-benchmark: codec.nn.activations.snake (in place, without autograd) against the
plain expression and DAC's torch.jit.script of it, side by side in one run.

    python scripts/bench/bench_snake.py [--threads 2] [--runs 30] [--shape 1 64 88200]

The default shape is a DAC 44 kHz encoder's first activation on 2 s of audio (64 channels).
Prints median milliseconds and each as a multiple of ours. All three give the same values bit
for bit (the script checks). Inference only: with autograd, snake runs the plain expression.
"""

from __future__ import annotations

import argparse

import torch
from timing import interleaved

from codec.nn.activations import snake


def plain(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)


@torch.jit.script
def scripted(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """DAC's layer (dac/nn/layers.py): the plain expression under torch.jit.script."""
    shape = x.shape
    x = x.reshape(shape[0], shape[1], -1)
    x = x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)
    return x.reshape(shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--shape", type=int, nargs=3, default=[1, 64, 88200])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    b, c, t = args.shape
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(b, c, t, generator=generator)
    alpha = torch.rand(1, c, 1, generator=generator) + 0.5
    with torch.no_grad():
        reference = plain(x, alpha)
        for name, fn in (("scripted", scripted), ("ours", snake)):
            if not torch.equal(fn(x, alpha), reference):
                raise SystemExit(f"{name} differs from the plain expression")
        medians = interleaved(
            {
                "plain expression": lambda: plain(x, alpha),
                "torch.jit.script (DAC)": lambda: scripted(x, alpha),
                "codec snake (in place)": lambda: snake(x, alpha),
            },
            runs=args.runs,
        )
    ours = medians["codec snake (in place)"]
    print(f"snake on ({b}, {c}, {t}) fp32, {args.threads} threads, median of {args.runs} runs,")
    print("glibc malloc with default settings")
    for name, seconds in medians.items():
        print(f"  {name:<24} {seconds * 1e3:8.2f} ms  {seconds / ours:5.2f}x ours")


if __name__ == "__main__":
    main()
