"""The listening report of `codec eval` (index.html): what it renders and within which limits,
that it escapes every name it shows, and that it links only files it wrote, by relative path.
The same pages in a real browser: tests/test_browser.py."""

import html
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import soundfile as sf

from codec.cli import main

HAS_OPUS = shutil.which("opusenc") is not None and shutil.which("opusdec") is not None
# A file name with markup, an entity, both quotes and non-ASCII letters.
ODD_NAME = '<b>Zoë & "Ånne"\'s <script>alert(1)<script>.wav'


class Links(HTMLParser):
    """Every src and href of a page, and its text."""

    def __init__(self):
        super().__init__()
        self.links, self.tags, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [value for key, value in attrs if key in ("src", "href")]

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture
def odd_speech(tmp_path, fsdd_root):
    """Three FSDD recordings, the first under ODD_NAME."""
    folder = tmp_path / "speech"
    folder.mkdir()
    sources = sorted(fsdd_root.glob("*_theo_*.wav"))[:3]
    names = [ODD_NAME, "plain.wav", "zz_last.wav"]
    for source, name in zip(sources, names):
        shutil.copy(source, folder / name)
    return folder


def run_eval(folder, model, out, *extra, bandwidths=("3", "6")):
    compare = ["--compare", "opus", "--opus-kbps", "6", "8"] if HAS_OPUS else []
    args = ["eval", str(folder), "-m", str(model), "--bandwidths", *bandwidths, "-o", str(out)]
    return main(args + compare + ["--quiet", "--spectrograms", "0", *extra])


def stoi_only(*extra):
    """The optional metrics cut to STOI (DNSMOS is slow; its own test below)."""
    return ["--metrics", "stoi", *extra]


def test_index_html_renders_limited_clips_with_escaped_names(odd_speech, saved_model, tmp_path):
    out = tmp_path / "report"
    limits = ["--listen-clips", "2", "--listen-seconds", "0.3"]
    bandwidths = ("3", "4.5")  # a rate with a decimal point names its files too
    assert run_eval(odd_speech, saved_model, out, *stoi_only(*limits), bandwidths=bandwidths) == 0
    page = (out / "index.html").read_text()
    # escaped: the name appears only as text, never as markup
    assert html.escape(str(odd_speech / ODD_NAME)) in page
    assert "<b>Zoë" not in page and "<script>alert" not in page
    parser = Links()
    parser.feed(page)
    assert parser.tags.count("script") == 1  # the page's own
    assert ODD_NAME in parser.text  # the name as text, its whole path in the tooltip
    # relative links only, each to a file that exists inside the report
    assert parser.links
    for link in parser.links:
        assert "://" not in link and not link.startswith("/") and ".." not in Path(link).parts
        assert (out / link).is_file(), link
    manifest = json.loads((out / "listening" / "clips.json").read_text())
    clips = manifest["clips"]
    assert [Path(c["file"]).name for c in clips] == [ODD_NAME, "plain.wav"]  # at most 2
    assert "zz_last.wav" not in page and "2 of 3 file(s) rendered" in page
    rows = {(r["file"], r["codec"], str(float(r["target_kbps"] or "nan"))): r for r in _csv(out)}
    for clip in clips:
        assert clip["seconds"] > 0.3 and clip["rendered_seconds"] == pytest.approx(0.3)
        pairs = [(d["codec"], d["target_kbps"]) for d in clip["decoded"]]
        opus = [("opus", 6.0), ("opus", 8.0)] if HAS_OPUS else []
        assert pairs == [("codec", 3.0), ("codec", 4.5), *opus]  # by codec, then by rate
        names = [Path(d["audio"]).name for d in clip["decoded"]]
        assert names[:2] == ["01_codec_3kbps.flac", "02_codec_4.5kbps.flac"]
        for entry in [clip["original"], *clip["decoded"]]:
            info = sf.info(str(out / entry["audio"]))
            assert info.format == "FLAC" and info.frames == round(0.3 * 16000)
            assert f"src='{entry['audio']}'" in page and f"src='{entry['spectrogram']}'" in page
        for entry in clip["decoded"]:  # the scores shown are the file's own row in results.csv
            row = rows[(clip["file"], entry["codec"], str(entry["target_kbps"]))]
            assert entry["scores"]["mel"] == pytest.approx(float(row["mel"]), rel=1e-5)
            assert set(entry["scores"]) >= {"file_kbps", "mel", "stft", "si_sdr"}


def _csv(out):
    import csv

    with open(out / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_original_shows_the_inputs_own_scores_and_no_clips_leaves_the_table(
    odd_speech, saved_model, tmp_path
):
    """With DNSMOS the input is scored itself (codec "input", no bitrate): its scores are the
    original's on the page and a row of the table; --listen-clips 0 renders no player."""
    out = tmp_path / "report"
    args = ["--bandwidths", "6", "--metrics", "dnsmos", "--listen-clips", "1"]
    assert (
        main(
            ["eval", str(odd_speech / "plain.wav"), "-m", str(saved_model), "-o", str(out)]
            + args
            + ["--quiet", "--spectrograms", "0"]
        )
        == 0
    )
    clip = json.loads((out / "listening" / "clips.json").read_text())["clips"][0]
    scores = clip["original"]["scores"]
    assert set(scores) == {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"}
    assert f"DNSMOS OVRL <b>{scores['dnsmos_ovrl']:.3f}</b>" in (out / "index.html").read_text()
    assert "<td class='name'>input</td><td>–</td>" in (out / "index.html").read_text()
    assert (
        main(
            ["eval", str(odd_speech), "-m", str(saved_model), "-o", str(out)]
            + stoi_only("--listen-clips", "0", "--quiet", "--bandwidths", "6")
        )
        == 0
    )
    page = (out / "index.html").read_text()
    assert "No clips rendered" in page and "rate_distortion.png" in page and "<audio" not in page
    assert json.loads((out / "listening" / "clips.json").read_text())["clips"] == []


def test_score_columns_follow_whatever_keys_the_rows_carry():
    from codec.listening import score_keys

    rows = [
        {"file": "a", "codec": "opus", "target_kbps": 6, "file_kbps": 7.1, "mel": 1.0},
        {"file": "a", "codec": "x", "target_kbps": 6, "dnsmos_ovrl": 3.1, "si_sdr": 4.0},
    ]
    assert score_keys(rows) == ["file_kbps", "mel", "si_sdr", "dnsmos_ovrl"]
