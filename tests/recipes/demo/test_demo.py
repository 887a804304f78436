"""make demo's pieces (recipes/demo): the adaptation stage improves the shipped model on a voice
it has not heard, the script runs its stages in order, and the clips are what the README says."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codec.audio import audio_info

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "recipes" / "demo"

# the adaptation at test size: fewer, shorter steps on one thread
QUICK = (
    "trainer.steps=24",
    "trainer.checkpoint_every=24",
    "data.segment_seconds=0.5",
    "trainer.threads=1",
    "trainer.progress=false",
)


def load(name: str):
    """A recipe script as a module (recipes/ is not a package), loaded once."""
    key = f"recipes_demo_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, DEMO / f"{name}.py")
        sys.modules[key] = importlib.util.module_from_spec(spec)  # dataclasses look it up
        spec.loader.exec_module(sys.modules[key])
    return sys.modules[key]


def test_adapting_the_shipped_model_improves_it_on_a_voice_it_has_not_heard(tmp_path):
    result = load("adapt").adapt(tmp_path / "run", QUICK, metrics=())
    assert result.steps == 24 and result.clips == 4
    assert list(result.before) == [1.5, 3.0, 6.0, 12.0]
    for means in (result.before, result.after):  # a working codec on this voice
        si_sdr = [means[kbps]["si_sdr"] for kbps in means]
        assert si_sdr[0] > 0 and si_sdr == sorted(si_sdr), si_sdr
    assert result.improved, "\n".join(result.table())
    assert "improved" in result.describe() and "NOT" not in result.describe()
    for report in ("eval_before", "eval_after"):
        assert (tmp_path / "run" / report / "summary.json").is_file()
    assert (tmp_path / "run" / "model" / "config.json").is_file()


def test_an_adaptation_that_learns_nothing_says_so(tmp_path):
    frozen = (
        "optim.lr=0",
        "+init_changes.quantizer.ema_update=false",
        "+init_changes.quantizer.threshold_ema_dead_code=0",
    )
    steps = ("trainer.steps=2", "trainer.checkpoint_every=2", "trainer.progress=false")
    result = load("adapt").adapt(tmp_path / "run", (*steps, *frozen), metrics=(), bandwidths=[6])
    # the same weights, refolded: equal up to float rounding
    assert result.after[6]["mel"] == pytest.approx(result.before[6]["mel"], rel=1e-3)
    assert not result.improved and "did NOT improve" in result.describe()


def test_the_adaptation_refuses_a_folder_with_a_run(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("{}")
    with pytest.raises(ValueError, match="holds a training run already"):
        load("adapt").adapt(tmp_path / "run", QUICK)


@pytest.mark.slow
def test_the_demo_script_codes_scores_and_adapts(tmp_path):
    env = dict(os.environ, RUN=str(tmp_path / "demo"), PY=sys.executable, DEMO_METRICS="stoi")
    env["ADAPT_ARGS"] = "trainer.steps=2 trainer.checkpoint_every=2 trainer.threads=1"
    done = subprocess.run(
        ["bash", str(DEMO / "run.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    stages = [line for line in done.stdout.splitlines() if line.startswith("== stage")]
    assert [s.split(":")[0] for s in stages] == ["== stage 1", "== stage 2", "== stage 3"]
    assert "| codec (4 levels) | 6 |" in done.stdout
    assert "held-out quality of 4 clips" in done.stdout
    demo = tmp_path / "demo"
    assert len(list((demo / "codes").glob("*.codes"))) == 2
    assert len(list((demo / "decoded").glob("*.wav"))) == 2
    assert (demo / "eval" / "report.md").is_file()


def test_the_demo_clips_are_short_wideband_speech_with_their_source():
    clips = sorted((DEMO / "speech").glob("*.flac"))
    assert len(clips) == 2
    for clip in clips:
        info = audio_info(clip)
        assert info.samplerate == 16000 and info.channels == 1
        assert 4.0 <= info.frames / info.samplerate <= 6.0
    assert sum(c.stat().st_size for c in clips) < 300_000
    source = (DEMO / "speech" / "SOURCE.md").read_text()
    assert "GPL" in source and all(c.name in source for c in clips)


def test_the_demo_voice_is_what_its_source_says():
    source = (DEMO / "voice" / "SOURCE.md").read_text()
    assert "CC BY 3.0" in source and "Carlo Flora" in source
    for split, files, (low, high) in (("train", 19, (45, 48)), ("heldout", 4, (20, 22))):
        clips = sorted((DEMO / "voice" / split).glob("*.flac"))
        seconds = sum(audio_info(c).frames / audio_info(c).samplerate for c in clips)
        assert len(clips) == files and low < seconds < high, (split, seconds)
        assert all(audio_info(c).samplerate == 16000 and audio_info(c).channels == 1 for c in clips)
    assert sum(p.stat().st_size for p in (DEMO / "voice").rglob("*.flac")) < 2_000_000
