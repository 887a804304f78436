"""The recipes' run.sh stages, with a stand-in for python that records each command: which
stages run by default, and on which device."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def recorded(tmp_path):
    """(PY stand-in, the file it logs each command line to)."""
    log = tmp_path / "commands.txt"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return python, log


def run(script: str, python: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("STAGE", "LAST", "DEVICE")}
    environment |= {"PY": str(python), "PATH": f"{python.parent}:{os.environ['PATH']}"} | env
    return subprocess.run(
        ["bash", str(ROOT / "recipes" / script / "run.sh")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_speech16k_runs_stages_0_to_3_and_stage_4_only_when_asked(recorded, tmp_path):
    python, log = recorded
    corpus, run_dir = tmp_path / "corpus", tmp_path / "run"
    corpus.mkdir()
    run_dir.mkdir()
    done = run("speech16k", python, DATA=str(corpus), RUN=str(run_dir))
    assert done.returncode == 0, done.stderr
    commands = log.read_text().splitlines()
    assert [c.split()[2] for c in commands if c.startswith("-m codec.cli")] == [
        "train",
        "eval",
        "tokenize",
    ]
    assert "stage 4" not in done.stdout and not any("prepare_ood" in c for c in commands)
    log.unlink()
    done = run("speech16k", python, DATA=str(corpus), RUN=str(run_dir), STAGE="4")
    assert done.returncode == 0, done.stderr
    commands = log.read_text().splitlines()
    assert "prepare_ood.py" in commands[0] and commands[1].startswith("-m codec.cli eval")


def test_general24k_evaluates_and_tokenizes_on_the_cpu_without_a_gpu(recorded, tmp_path):
    python, log = recorded
    corpus, run_dir = tmp_path / "corpus", tmp_path / "run"
    (corpus / "speech").mkdir(parents=True)
    run_dir.mkdir()
    done = run("general24k", python, CORPUS=str(corpus), RUN=str(run_dir), GPUS="0")
    assert done.returncode == 0, done.stderr
    coding = [c for c in log.read_text().splitlines() if " eval " in c or " tokenize " in c]
    assert len(coding) == 2 and all("--device cpu" in c for c in coding), coding
    log.unlink()
    done = run("general24k", python, CORPUS=str(corpus), RUN=str(run_dir), GPUS="2", STAGE="2")
    coding = log.read_text().splitlines()[1:]
    assert done.returncode == 0 and all("--device cuda" in c for c in coding), coding
