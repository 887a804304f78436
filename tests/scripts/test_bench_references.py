"""The benchmarks' reference models import as `make bench` runs them: from scripts/bench, in a
fresh interpreter (pytest's own import path would hide a missing folder)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_reference_model_modules_import_from_a_benchmark():
    code = (
        "from reference_models import reference_module\n"
        "for name in ('encodec_reference', 'dac_reference'):\n"
        "    module = reference_module(name)\n"
        "    print(name, module.__file__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "scripts" / "bench",
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT / "scripts" / "bench"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tests/models/dac_reference.py" in done.stdout
