"""codec eval: metrics that rank signals correctly, reports on real speech, Opus side by side,
and bad files reported without stopping the run."""

import json
import shutil

import pytest
import torch

from codec.audio import read_audio
from codec.cli import main
from codec.evaluate import Quality

HAS_OPUS = shutil.which("opusenc") is not None and shutil.which("opusdec") is not None


@pytest.fixture
def speech(tmp_path, fsdd_root):
    folder = tmp_path / "speech"
    folder.mkdir()
    for src in sorted(fsdd_root.glob("*_jackson_*.wav"))[:3]:
        shutil.copy(src, folder / src.name)
    return folder


def longest(fsdd_root, among=20):
    return max(sorted(fsdd_root.glob("*.wav"))[:among], key=lambda p: p.stat().st_size)


def test_metrics_rank_clean_above_noisy_on_real_speech(fsdd_root):
    wav, rate = read_audio(longest(fsdd_root))
    quality = Quality(rate)
    torch.manual_seed(0)
    same = quality(wav, wav)
    light = quality(wav + 0.003 * torch.randn_like(wav), wav)
    heavy = quality(wav + 0.1 * torch.randn_like(wav), wav)
    assert same["mel"] < 1e-4 and same["si_sdr"] > 60
    for better, worse in ((same, light), (light, heavy)):
        assert better["mel"] < worse["mel"] and better["stft"] < worse["stft"]
        assert better["si_sdr"] > worse["si_sdr"]
        for key in ("pesq", "stoi"):
            if key in better:
                assert better[key] >= worse[key]
    if "pesq" in same:  # narrow-band PESQ at 8 kHz tops out near 4.5
        assert same["pesq"] > 4.0 and heavy["pesq"] < 2.5


def test_eval_writes_reports_and_reports_bad_files(speech, saved_model, tmp_path, capsys, csv_rows):
    (speech / "broken.wav").write_bytes(b"RIFF0000WAVEfmt ")
    out = tmp_path / "report"
    compare = ["--compare", "opus"] if HAS_OPUS else []
    code = main(
        ["eval", str(speech), "-m", str(saved_model), "--bandwidths", "3", "12", "-o", str(out)]
        + compare
        + ["--quiet", "--spectrograms", "1"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "broken.wav" in err and "evaluated 3 of 4 file(s)" in err
    rows = csv_rows(out / "results.csv")
    codecs = {"codec", "opus"} if HAS_OPUS else {"codec"}
    assert len(rows) == 3 * 2 * len(codecs)
    assert {r["codec"] for r in rows} == codecs
    assert {r["levels"] for r in rows if r["codec"] == "codec"} == {"1", "4"}  # 3 kbps a level
    for row in rows:
        assert float(row["mel"]) > 0 and float(row["file_kbps"]) > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == 4 and summary["files_failed"] == 1
    stats = summary["code_statistics"]
    for kbps, entry in stats.items():
        assert 0 < entry["entropy_kbps"] <= float(kbps) + 1e-6
    assert "| codec (4 levels) | 12 |" in (out / "report.md").read_text()
    for name in ("rate_distortion.png", "spectrograms"):
        assert (out / name).exists()
    assert len(list((out / "spectrograms").glob("*.png"))) == 1


@pytest.mark.skipif(not HAS_OPUS, reason="opus-tools (opusenc, opusdec) are not installed")
def test_opus_improves_with_bitrate_on_real_speech(speech, saved_model, tmp_path):
    out = tmp_path / "report"
    args = ["eval", str(speech), "-m", str(saved_model), "--bandwidths", "6", "16"]
    assert main(args + ["--compare", "opus", "-o", str(out), "--quiet"]) == 0
    means = json.loads((out / "summary.json").read_text())["means"]
    opus = {m["target_kbps"]: m for m in means if m["codec"] == "opus"}
    assert opus[16]["file_kbps"] > opus[6]["file_kbps"]
    assert opus[16]["mel"] < opus[6]["mel"]


def test_compare_opus_without_opus_tools_is_a_usage_error(
    speech, saved_model, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    args = ["eval", str(speech), "-m", str(saved_model), "--compare", "opus", "--quiet"]
    assert main(args + ["-o", str(tmp_path / "r")]) == 2
    assert "apt-get install opus-tools" in capsys.readouterr().err


def test_missing_optional_metrics_are_named(monkeypatch, fsdd_root):
    import builtins

    real_import = builtins.__import__

    def no_pesq(name, *args, **kwargs):
        if name in ("pesq", "pystoi"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pesq)
    quality = Quality(8000)
    assert set(quality.skipped) == {"pesq", "stoi"}
    wav, _ = read_audio(longest(fsdd_root))
    assert set(quality(wav, wav)) == {"mel", "stft", "si_sdr"}
