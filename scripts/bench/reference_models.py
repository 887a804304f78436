"""The reference packages' models with random weights (tests/models/encodec_reference.py and
dac_reference.py), importable from the benchmarks: those modules import tests/references.py,
so both folders go on the import path."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parents[2] / "tests"


def reference_module(name: str) -> ModuleType:
    """tests/models/`name`.py (encodec_reference or dac_reference) as a module."""
    for folder in (TESTS, TESTS / "models"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    return importlib.import_module(name)
