"""codec mushra: the test page built from an eval report (stimuli, anchors, conditions), and
the aggregation of listeners' ratings (means, 95% intervals, BS.1534 post-screening, all files
or none). A real listener in a real browser: tests/test_browser.py."""

import base64
import io
import json
import math
import re
import shutil
import statistics

import pytest
import soundfile as sf
import torch

from codec.cli import main
from codec.mushra import build_test, lowpass, student_t_quantile

CONDITIONS = {
    "reference": {"name": "reference", "kind": "reference", "kbps": None},
    "anchor70": {"name": "anchor 7 kHz", "kind": "anchor", "kbps": None},
    "anchor35": {"name": "anchor 3.5 kHz", "kind": "anchor", "kbps": None},
    "codec@6": {"name": "codec", "kind": "test", "kbps": 6},
    "opus@6": {"name": "opus", "kind": "test", "kbps": 6},
}


@pytest.fixture(scope="module")
def report(tmp_path_factory, fsdd_root, tiny_codec):
    """A `codec eval` report of the tiny model on three FSDD recordings at 3 and 6 kbps."""
    root = tmp_path_factory.mktemp("mushra")
    folder = root / "speech"
    folder.mkdir()
    for source in sorted(fsdd_root.glob("*_lucas_*.wav"))[:3]:
        shutil.copy(source, folder / source.name)
    model = tiny_codec().save_pretrained(root / "model")
    out = root / "report"
    args = ["eval", str(folder), "-m", str(model), "--bandwidths", "3", "6", "-o", str(out)]
    args += ["--quiet", "--spectrograms", "0", "--listen-clips", "2", "--metrics", "stoi"]
    assert main(args) == 0
    return out


def band_energy(wav: torch.Tensor, rate: int, low: float, high: float) -> float:
    spectrum = torch.fft.rfft(wav.double(), dim=-1).abs().square().sum(0)
    freqs = torch.fft.rfftfreq(wav.shape[-1], 1 / rate)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


@pytest.mark.parametrize("rate", [16000, 44100])
def test_anchors_remove_the_band_above_their_cutoff_and_keep_the_rest(rate):
    torch.manual_seed(0)
    noise = torch.randn(1, rate)  # white: every band equally loud
    for cutoff in (3500, 7000):
        out = lowpass(noise, rate, cutoff)
        assert out.shape == noise.shape
        kept = band_energy(out, rate, 0, 0.95 * cutoff) / band_energy(noise, rate, 0, 0.95 * cutoff)
        above = band_energy(out, rate, 1.05 * cutoff, rate / 2)
        assert kept == pytest.approx(1, abs=0.02)
        assert above < 1e-4 * band_energy(noise, rate, 1.05 * cutoff, rate / 2)
    assert torch.equal(lowpass(noise, 8000, 7000), noise)  # above Nyquist: nothing to remove


def decoded_stimuli(test, trial):
    out = {}
    for cid, audio_id in trial["stimuli"].items():
        wav, rate = sf.read(io.BytesIO(test["audio"][audio_id]), dtype="float32", always_2d=True)
        out[cid] = torch.from_numpy(wav.T)
    return out, rate


def test_the_page_has_a_trial_per_clip_with_reference_anchors_and_conditions(report, tmp_path):
    test = build_test(report)
    assert [c["id"] for c in test["conditions"]] == [
        "reference",
        "anchor70",
        "anchor35",
        "codec@3",
        "codec@6",
    ]
    assert len(test["trials"]) == 2  # the report rendered 2 clips
    manifest = json.loads((report / "listening" / "clips.json").read_text())
    for trial, clip in zip(test["trials"], manifest["clips"]):
        stimuli, rate = decoded_stimuli(test, trial)
        reference, _ = sf.read(report / clip["original"]["audio"], dtype="float32")
        torch.testing.assert_close(stimuli["reference"][0], torch.from_numpy(reference))
        assert {w.shape[-1] for w in stimuli.values()} == {trial["samples"]}
        # FSDD is 8 kHz speech: the 3.5 kHz anchor removes its top band, the 7 kHz one nothing
        top = band_energy(stimuli["reference"], rate, 3700, 4000)
        assert band_energy(stimuli["anchor35"], rate, 3700, 4000) < 1e-3 * top
        assert band_energy(stimuli["anchor70"], rate, 3700, 4000) == pytest.approx(top, rel=0.05)
    chosen = build_test(report, [("codec", 6)], trials=1)
    assert [c["id"] for c in chosen["conditions"]][3:] == ["codec@6"]
    assert len(chosen["trials"]) == 1 and chosen["test_id"] != test["test_id"]
    assert build_test(report)["test_id"] == test["test_id"]  # the same test, built again


def test_the_page_file_holds_everything_and_names_no_server(report, tmp_path, capsys):
    page = tmp_path / "test.html"
    assert main(["mushra", "page", str(report), "-o", str(page), "--title", "A <test> & co"]) == 0
    assert "2 trial(s) of 5 sounds" in capsys.readouterr().err
    text = page.read_text()
    assert "<title>A &lt;test&gt; &amp; co</title>" in text
    assert "default-src 'none'" in text  # the browser refuses any connection
    assert not re.search(r"(src|href)=['\"]", text)  # nothing linked: it is all inside
    assert "http://" not in text and "https://" not in text
    data = json.loads(
        re.search(r'<script type="application/json" id="audio">(.*?)</script>', text)[1]
    )
    assert len(data) == 2 * 5 and all(base64.b64decode(v)[:4] == b"fLaC" for v in data.values())


def test_page_errors_are_one_line(report, tmp_path, capsys):
    assert main(["mushra", "page", str(report), "--conditions", "opus:99"]) == 1
    err = capsys.readouterr().err.strip()
    assert "no opus:99 in this report (it has codec:3, codec:6)" in err and "\n" not in err
    assert main(["mushra", "page", str(report), "--conditions", "six"]) == 2
    assert "six: not CODEC:KBPS" in capsys.readouterr().err
    assert main(["mushra", "page", str(tmp_path)]) == 1
    assert "clips.json: not found" in capsys.readouterr().err
    copy = shutil.copytree(report, tmp_path / "copy")
    manifest = json.loads((copy / "listening" / "clips.json").read_text())
    del manifest["clips"][1]["decoded"][0]["target_kbps"]
    (copy / "listening" / "clips.json").write_text(json.dumps(manifest))
    assert main(["mushra", "page", str(copy)]) == 1
    err = capsys.readouterr().err.strip()
    assert "clips.json: a clip lacks its file, audio or bitrate" in err and "\n" not in err
    manifest["clips"][1]["decoded"][0] |= {"target_kbps": 3, "audio": "../../etc/passwd"}
    (copy / "listening" / "clips.json").write_text(json.dumps(manifest))
    assert main(["mushra", "page", str(copy)]) == 1
    assert "'../../etc/passwd' is not a path inside the report" in capsys.readouterr().err
    assert not (copy / "mushra.html").exists()


# --- aggregation ---------------------------------------------------------------------------


def ratings_file(path, listener, trials, test_id="t1", session=None, conditions=CONDITIONS):
    """A ratings file as the page writes it; `trials` is a list of {condition id: rating}."""
    data = {
        "format": "codec-mushra-ratings",
        "version": 1,
        "test_id": test_id,
        "title": "test",
        "session": session or listener,
        "listener": listener,
        "seed": 1,
        "started": "2025-01-01T00:00:00Z",
        "finished": "2025-01-01T00:10:00Z",
        "conditions": conditions,
        "trials": [
            {"trial": f"t{i}", "file": f"f{i}.wav", "position": i, "order": list(r), "ratings": r}
            for i, r in enumerate(trials)
        ],
    }
    path.write_text(json.dumps(data))
    return path


def trial(reference, codec, opus=50, low=10, mid=40):
    return {
        "reference": reference,
        "anchor70": mid,
        "anchor35": low,
        "codec@6": codec,
        "opus@6": opus,
    }


def test_t_quantiles_match_the_tables():
    for df, table in ((1, 12.7062), (2, 4.3027), (5, 2.5706), (10, 2.2281), (30, 2.0423)):
        assert student_t_quantile(0.975, df) == pytest.approx(table, abs=1e-4)
    assert student_t_quantile(0.975, 100000) == pytest.approx(1.95997, abs=1e-4)


def test_means_and_intervals_over_every_kept_rating(tmp_path, capsys):
    a = ratings_file(tmp_path / "a.json", "ann", [trial(100, 70), trial(95, 60), trial(100, 80)])
    b = ratings_file(tmp_path / "b.json", "bob", [trial(90, 55), trial(100, 65), trial(98, 75)])
    out = tmp_path / "results"
    assert main(["mushra", "aggregate", str(a), str(b), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "mushra.json").read_text())
    by = {(c["condition"], c["kbps"]): c for c in results["conditions"]}
    codec = [70, 60, 80, 55, 65, 75]
    half = 2.5706 * statistics.stdev(codec) / math.sqrt(6)  # t(0.975, 5 degrees of freedom)
    assert by[("codec", 6)]["mean"] == pytest.approx(67.5)
    assert by[("codec", 6)]["ci95"] == pytest.approx(half, rel=1e-4)
    assert by[("reference", None)]["mean"] == pytest.approx(sum([100, 95, 100, 90, 100, 98]) / 6)
    assert by[("opus", 6)]["ci95"] == 0 and by[("opus", 6)]["ratings"] == 6
    assert f"| codec | 6 | 6 | 67.5 | {67.5 - half:.1f} to {67.5 + half:.1f} |" in printed
    assert "Listeners: 2, kept: 2, excluded: 0" in printed
    assert (out / "mushra.md").read_text() == printed and (out / "mushra.png").is_file()


def test_post_screening_excludes_a_listener_who_misses_the_reference(tmp_path, capsys):
    """Below 90 in 1 of 7 trials (14%) keeps a listener; 1 of 6 (17%) excludes one."""
    good = [trial(100, 80)] * 6 + [trial(85, 80)]
    careless = [trial(100, 20)] * 5 + [trial(60, 20)]
    a = ratings_file(tmp_path / "a.json", "ann", good)
    c = ratings_file(tmp_path / "c.json", "cid", careless)
    assert main(["mushra", "aggregate", str(a), str(c), "-o", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    assert "Listeners: 2, kept: 1, excluded: 1" in printed
    assert f"- cid ({c}): hidden reference below 90 in 1 of 6 trials: excluded" in printed
    assert f"- ann ({a}): hidden reference below 90 in 1 of 7 trials: kept" in printed
    results = json.loads((tmp_path / "r" / "mushra.json").read_text())
    codec = next(r for r in results["conditions"] if r["condition"] == "codec")
    assert codec["mean"] == 80 and codec["ratings"] == 7  # cid's 20s are not in it
    assert [s["excluded"] for s in results["post_screening"]["listeners"]] == [False, True]
    assert main(["mushra", "aggregate", str(c)]) == 1  # nobody left
    assert "every listener was excluded" in capsys.readouterr().err


def test_bad_files_are_one_line_each_and_nothing_is_aggregated(tmp_path, capsys):
    good = ratings_file(tmp_path / "good.json", "ann", [trial(100, 70)])
    other = ratings_file(tmp_path / "other.json", "bob", [trial(100, 70)], test_id="t2")
    again = ratings_file(tmp_path / "again.json", "ann", [trial(100, 70)])  # ann's session
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "codec-mushra-ratings", "trials": [')
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"format": "webmushra", "trials": []}))
    missing = dict(trial(100, 70))
    del missing["opus@6"]
    partial = ratings_file(tmp_path / "partial.json", "eve", [missing])
    wild = ratings_file(tmp_path / "wild.json", "dan", [trial(100, 170)])
    bad = [other, again, broken, foreign, partial, wild]
    out = tmp_path / "results"
    assert main(["mushra", "aggregate", str(good), *map(str, bad), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == len(bad) + 1 and lines[-1].endswith("6 bad file(s); nothing aggregated")
    for path, line in zip(bad, lines):
        assert line.startswith(f"error: {path}: ")
    assert "ratings of another test" in lines[0] and "the same session as" in lines[1]
    assert "not JSON" in lines[2] and "not a ratings file" in lines[3]
    assert "does not rate every condition" in lines[4] and "rating 170" in lines[5]
    assert captured.out == "" and not out.exists()
