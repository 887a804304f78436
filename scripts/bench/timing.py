"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def interleaved(fns: dict[str, Callable[[], object]], runs: int, warmup: int = 2) -> dict:
    """Median seconds of each callable, timed in turn within every round so that machine noise
    hits all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def streaming_real_time(model, codes) -> float:
    """Real-time factor of decoding `codes` (b, g, q, f) one frame per call under
    `model.streaming()` (the layers' streaming path, or the model's runtime where one is
    attached): seconds of audio per second of wall time."""
    with torch.inference_mode(), model.streaming(batch_size=codes.shape[0]):
        start = time.perf_counter()
        for k in range(codes.shape[-1]):
            model.decode(codes[..., k : k + 1])
        elapsed = time.perf_counter() - start
    return codes.shape[-1] / model.frame_rate / elapsed
