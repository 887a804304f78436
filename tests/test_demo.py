"""make demo's pieces (recipes/demo): its training stage improves on the untrained model, its
report prints ours beside Opus and writes the files it names, and its speech clips are what the
README says."""

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from codec.audio import audio_info, read_for, write_audio
from codec.cli import main as cli

DEMO = Path(__file__).resolve().parent.parent / "recipes" / "demo"

# the demo's training path at test size: its model, short segments, small batches
TINY = (
    "data.segment_seconds=0.25",
    "data.batch_size=4",
    "data.valid_fraction=0.2",
    "trainer.valid_items=4",
    "trainer.valid_seconds=1.0",
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


@pytest.fixture(scope="module")
def corpus(fsdd_root, tmp_path_factory):
    """30 real spoken digits (8 kHz, read at 16 kHz) from 3 speakers, linked into one folder:
    the held-out ones are speech, which the untrained model's output is far from."""
    folder = tmp_path_factory.mktemp("corpus")
    for path in sorted(fsdd_root.glob("*.wav"))[::100][:30]:
        (folder / path.name).symlink_to(path)
    return folder


def train(corpus, run_dir, steps: int, *overrides):
    every = [f"trainer.{key}={steps}" for key in ("steps", "valid_every", "checkpoint_every")]
    return load("train").train_demo(run_dir, (*TINY, *every, *overrides), corpus=corpus)


def test_the_demo_training_ends_better_than_it_starts(corpus, tmp_path):
    result = train(corpus, tmp_path / "run", 100)
    assert result.steps == 100 and result.clips == 4  # of 6 held out (20% of 30 + 2 clips)
    assert result.metric == "mel@3.2kbps"  # 2 groups x 4 levels x 256 codes at 50 frames/s
    assert result.end < 0.8 * result.start, result.describe()
    assert "improved" in result.describe()
    assert (tmp_path / "run" / "model" / "config.json").is_file()


def test_the_demo_training_reports_no_improvement_when_nothing_is_learned(corpus, tmp_path):
    # no gradient steps and frozen codebooks: the end is the untrained model, no better
    frozen = (
        "optim.lr=0",
        "optim.ema_decay=0",
        "model.quantizer.kmeans_init=false",
        "+model.quantizer.ema_update=false",
        "model.quantizer.threshold_ema_dead_code=0",
    )
    result = train(corpus, tmp_path / "run", 10, *frozen)
    assert result.end == pytest.approx(result.start, rel=1e-4)
    assert not result.improved and "did NOT improve" in result.describe()


def test_the_demo_training_refuses_a_folder_with_a_run(corpus, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("{}")
    with pytest.raises(ValueError, match="holds a training run already"):
        load("train").train_demo(tmp_path / "run", TINY, corpus=corpus)


@pytest.mark.parametrize("opus", [True, False], ids=["with-opus", "without-opus"])
def test_the_demo_report_prints_ours_beside_opus(
    fsdd_root, saved_model, tmp_path, capsys, monkeypatch, opus
):
    if opus and shutil.which("opusenc") is None:
        pytest.skip("opus-tools is not installed")
    if not opus:
        monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    clips = []
    for index, source in enumerate(sorted(fsdd_root.glob("*_theo_*.wav"))[:2]):
        clips.append(tmp_path / "speech" / f"clip{index}.wav")
        write_audio(clips[-1], read_for(source, 16000, 1), 16000)
    out, model = tmp_path / "out", ["-m", str(saved_model), "--quiet"]
    assert cli(["encode", *map(str, clips), *model, "-b", "6", "-o", f"{out}/codes"]) == 0
    assert cli(["decode", f"{out}/codes", *model, "-o", f"{out}/decoded"]) == 0
    capsys.readouterr()
    load("report").report(out, clips, 6.0)
    printed = capsys.readouterr().out
    ours = [line for line in printed.splitlines() if line.strip().startswith("ours (")]
    opus_rows = [line for line in printed.splitlines() if line.strip().startswith("Opus")]
    assert len(ours) == 3  # two clips and their mean
    assert "mel distance" in printed and "SI-SDR dB" in printed
    for name in ("clip0", "clip1"):
        assert (out / "original" / f"{name}.wav").is_file()
        assert (out / "spectrograms" / f"{name}.png").is_file()
        assert (out / "opus" / f"{name}.wav").is_file() == opus
    if opus:
        assert len(opus_rows) == 3
    else:
        assert not opus_rows and "apt-get install opus-tools" in printed


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
