"""codec eval: metrics that rank signals correctly, reports on real speech, Opus side by side,
and bad files reported without stopping the run."""

import importlib.util
import json
import math
import shutil

import pytest
import torch

from codec.audio import read_audio
from codec.cli import main
from codec.evaluate import Quality

HAS_OPUS = shutil.which("opusenc") is not None and shutil.which("opusdec") is not None
HAS_DNSMOS = all(importlib.util.find_spec(m) for m in ("speechmos", "onnxruntime", "librosa"))


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
    assert same["mel"] < 1e-4 and same["si_sdr"] > 60 and same["band_db"] == 0
    for better, worse in ((same, light), (light, heavy)):
        assert better["mel"] < worse["mel"] and better["stft"] < worse["stft"]
        assert better["si_sdr"] > worse["si_sdr"]
        assert abs(better["band_db"]) <= abs(worse["band_db"])
        for key in ("pesq", "stoi"):
            if key in better:
                assert better[key] >= worse[key]
    if HAS_DNSMOS:  # white noise at -20 dB: a worse background and overall score
        for key in ("dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"):
            assert 1 <= heavy[key] < same[key] <= 5, key
    if "pesq" in same:  # narrow-band PESQ at 8 kHz tops out near 4.5
        assert same["pesq"] > 4.0 and heavy["pesq"] < 2.5


def test_eval_writes_reports_and_reports_bad_files(speech, saved_model, tmp_path, capsys, csv_rows):
    (speech / "broken.wav").write_bytes(b"RIFF0000WAVEfmt ")
    out = tmp_path / "report"
    compare = ["--compare", "opus", "--opus-kbps", "6", "10", "16"] if HAS_OPUS else []
    code = main(
        ["eval", str(speech), "-m", str(saved_model), "--bandwidths", "3", "12", "-o", str(out)]
        + compare
        + ["--quiet", "--spectrograms", "1", "--metrics", "stoi"]  # DNSMOS: tests below
    )
    err = capsys.readouterr().err
    assert code == 1 and "broken.wav" in err and "evaluated 3 of 4 file(s)" in err
    rows = csv_rows(out / "results.csv")
    per_file = {"codec": 2, "opus": 3 if HAS_OPUS else 0}
    assert len(rows) == 3 * sum(per_file.values())
    assert {r["codec"] for r in rows} == {c for c, n in per_file.items() if n}
    assert {r["levels"] for r in rows if r["codec"] == "codec"} == {"1", "4"}  # 3 kbps a level
    for row in rows:
        assert float(row["mel"]) > 0 and float(row["file_kbps"]) > 0
        assert math.isfinite(float(row["band_db"]))
    if HAS_OPUS:
        assert {r["target_kbps"] for r in rows if r["codec"] == "opus"} == {"6", "10", "16"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == 4 and summary["files_failed"] == 1
    assert len(summary["band_edges_hz"]) == 13
    for mean in summary["means"]:
        assert len(mean["bands_db"]) == 12 and "band_db" in mean
    stats = summary["code_statistics"]
    for kbps, entry in stats.items():
        assert 0 < entry["entropy_kbps"] <= float(kbps) + 1e-6
    report = (out / "report.md").read_text()
    assert "| codec (4 levels) | 12 |" in report
    if HAS_OPUS:  # the tiny untrained model is worse than Opus 6 kbps on every score
        equivalent = summary["opus_equivalent_kbps"]
        assert set(equivalent) == {"3", "12"}
        assert equivalent["3"]["mel"] == {"kbps": 6.0, "bound": "<"}
        assert "Opus-equivalent bitrate" in report and "| 3 | <6 |" in report
    for name in ("rate_distortion.png", "spectrograms"):
        assert (out / name).exists()
    assert len(list((out / "spectrograms").glob("*.png"))) == 1


@pytest.mark.skipif(not HAS_OPUS, reason="opus-tools (opusenc, opusdec) are not installed")
def test_opus_improves_with_bitrate_on_real_speech(speech, saved_model, tmp_path):
    out = tmp_path / "report"
    args = ["eval", str(speech), "-m", str(saved_model), "--bandwidths", "6", "--metrics", "stoi"]
    assert main(args + ["--compare", "opus", "--opus-kbps", "6", "16", "-o", str(out)]) == 0
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
        if name in ("pesq", "pystoi", "speechmos"):
            raise ImportError(name, name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pesq)
    quality = Quality(8000)
    assert set(quality.skipped) == {"pesq", "stoi", "dnsmos"}
    assert "pip install speechmos" in quality.skipped["dnsmos"]
    wav, _ = read_audio(longest(fsdd_root))
    assert set(quality(wav, wav)) == {"mel", "stft", "si_sdr", "band_db", "bands_db"}
    assert quality.of_input(wav) == {}


def test_metrics_left_out_are_named_and_not_run(fsdd_root):
    quality = Quality(8000, optional=("stoi",))
    assert quality.skipped == {
        "pesq": "not asked for (--metrics)",
        "dnsmos": "not asked for (--metrics)",
    }
    wav, _ = read_audio(longest(fsdd_root))
    assert "stoi" in quality(wav, wav) or "stoi" in quality.skipped


@pytest.mark.skipif(not HAS_DNSMOS, reason="speechmos, onnxruntime or librosa not installed")
def test_eval_scores_the_input_itself_with_dnsmos(speech, saved_model, tmp_path, csv_rows):
    out = tmp_path / "report"
    args = ["eval", str(speech / sorted(p.name for p in speech.iterdir())[0])]
    args += ["-m", str(saved_model), "--bandwidths", "12", "--metrics", "dnsmos"]
    assert main(args + ["-o", str(out), "--quiet", "--spectrograms", "0"]) == 0
    rows = {r["codec"]: r for r in csv_rows(out / "results.csv")}
    assert set(rows) == {"input", "codec"} and rows["input"]["target_kbps"] == ""
    assert rows["input"]["mel"] == "" and 1 <= float(rows["input"]["dnsmos_ovrl"]) <= 5
    assert "| input | - | - |" in (out / "report.md").read_text()


@pytest.mark.skipif(not HAS_DNSMOS, reason="speechmos, onnxruntime or librosa not installed")
def test_dnsmos_is_the_dns_challenge_scorer_at_16khz(fsdd_root):
    from speechmos import dnsmos as reference

    from codec.audio import resample
    from codec.dnsmos import DNSMOS

    wav, rate = read_audio(longest(fsdd_root))  # 8 kHz: resampled to 16 kHz by both
    at_16k = resample(wav, rate, 16000)[0].numpy()
    expected = reference.run(at_16k, 16000)
    scores = DNSMOS()(torch.cat([wav, wav]), rate)  # two equal channels: their mean
    assert scores["dnsmos_ovrl"] == pytest.approx(expected["ovrl_mos"], abs=1e-5)
    assert scores["dnsmos_p808"] == pytest.approx(expected["p808_mos"], abs=1e-5)
    assert scores["dnsmos_sig"] == pytest.approx(expected["sig_mos"], abs=1e-5)
    assert scores["dnsmos_bak"] == pytest.approx(expected["bak_mos"], abs=1e-5)
