"""`make bench` writes the figures of each kernel ISA to its own file."""

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _bench_all():
    spec = importlib.util.spec_from_file_location("bench_all", ROOT / "scripts/bench/bench_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("capability", "quick", "expected"),
    [
        ("AVX512", False, "BENCHMARKS.md"),
        ("AVX2", False, "BENCHMARKS-avx2.md"),
        ("AVX2", True, "BENCHMARKS-quick.md"),
        ("AVX512", True, "BENCHMARKS-quick.md"),
    ],
)
def test_the_default_output_follows_the_kernel_isa(monkeypatch, capability, quick, expected):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert _bench_all().default_output(quick) == expected
