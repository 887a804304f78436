"""recipes/speech16k/prepare_ood.py on a small fake install: the fixed subset, the joined FSDD
digit strings, the file list, and the one-line errors for a missing source."""

import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SCRIPT = Path(__file__).resolve().parents[3] / "recipes" / "speech16k" / "prepare_ood.py"
spec = importlib.util.spec_from_file_location("prepare_ood", SCRIPT)
prepare_ood = importlib.util.module_from_spec(spec)
sys.modules["prepare_ood"] = prepare_ood
spec.loader.exec_module(prepare_ood)


def test_pick_takes_the_same_subset_whatever_the_order():
    names = [f"xx/word{i}.ogg" for i in range(40)]
    chosen = prepare_ood.pick(names, 6)
    assert len(chosen) == 6 and chosen == sorted(chosen) and set(chosen) <= set(names)
    shuffled = list(names)
    random.Random(0).shuffle(shuffled)
    assert prepare_ood.pick(shuffled, 6) == chosen
    # a subset of the names keeps those of the chosen ones it holds
    assert set(prepare_ood.pick(names[:20], 6)) >= set(chosen) & set(names[:20])
    assert prepare_ood.pick(names[:4], 6) == sorted(names[:4])


def test_active_seconds_counts_frames_near_the_loudest():
    rate = 16000
    rng = np.random.default_rng(0)
    speech = rng.standard_normal(rate // 2) * 0.3  # 0.5 s loud
    hiss = rng.standard_normal(rate) * 0.3e-3  # 1 s at -60 dB: not active
    assert prepare_ood.active_seconds(np.concatenate([hiss, speech, hiss]), rate) == 0.5
    assert prepare_ood.active_seconds(np.zeros(rate), rate) == 0.0
    assert prepare_ood.active_seconds(np.ones(10), rate) == 0.0  # shorter than one frame


def test_join_digits_puts_a_silent_pause_between_clips():
    rate = 8000
    clips = [np.full(100 + i, i + 1, dtype=np.int16) for i in range(3)]
    joined = prepare_ood.join_digits(clips, rate, pause_seconds=0.01)
    pause = 80
    assert joined.dtype == np.int16 and len(joined) == 100 + 101 + 102 + 2 * pause
    assert (joined[:100] == 1).all() and (joined[100 : 100 + pause] == 0).all()
    assert (joined[100 + pause : 201 + pause] == 2).all() and (joined[-102:] == 3).all()


def _tone(path: Path, seconds: float, rate: int = 16000, silence: float = 0.0) -> None:
    """A 220 Hz tone of `seconds`, then `silence` seconds of zeros."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(seconds * rate)) / rate
    wav = np.concatenate([0.3 * np.sin(2 * np.pi * 220 * t), np.zeros(round(silence * rate))])
    sf.write(path, wav.astype(np.float32), rate)


def _fake_install(tmp_path: Path, monkeypatch) -> dict[str, Path]:
    roots = {name: tmp_path / name for name in ("ktuberling", "klettres", "fsdd")}
    for i in range(5):
        _tone(roots["ktuberling"] / "xx" / f"word{i}.wav", 1.2)
        _tone(roots["klettres"] / "yy" / "alpha" / f"l{i}.ogg", 1.1)
    _tone(roots["ktuberling"] / "xx" / "short.wav", 0.5)
    _tone(roots["ktuberling"] / "xx" / "quiet.wav", 0.3, silence=1.0)  # long, too little speech
    (roots["ktuberling"] / "xx" / "notes.txt").write_text("not audio")
    for digit in range(10):
        for take in range(2):
            _tone(roots["fsdd"] / f"{digit}_ann_{take}.wav", 0.3, rate=8000)
    monkeypatch.setattr(prepare_ood, "KTUBERLING_LANGUAGES", ("xx",))
    monkeypatch.setattr(prepare_ood, "KLETTRES_LANGUAGES", ("yy",))
    monkeypatch.setattr(prepare_ood, "KTUBERLING_PER_LANGUAGE", 6)  # more than there are
    monkeypatch.setattr(prepare_ood, "KLETTRES_PER_LANGUAGE", 2)
    monkeypatch.setattr(prepare_ood, "FSDD_SPEAKERS", ("ann",))
    monkeypatch.setattr(prepare_ood, "FSDD_TAKES", range(2))
    return roots


def _run(monkeypatch, roots: dict[str, Path], out: Path, listing: Path) -> None:
    argv = [str(SCRIPT), str(out), "--list", str(listing)]
    argv += [f"--{name}={root}" for name, root in roots.items()]
    monkeypatch.setattr(sys, "argv", argv)
    prepare_ood.main()


def test_main_links_the_subset_joins_digits_and_writes_the_list(tmp_path, monkeypatch):
    roots = _fake_install(tmp_path, monkeypatch)
    out, listing = tmp_path / "ood", tmp_path / "ood_files.txt"
    _run(monkeypatch, roots, out, listing)
    files = listing.read_text().splitlines()
    assert files == sorted(files) and len(files) == 5 + 2 + 2
    parts = [Path(f).relative_to(out).parts[0] for f in files]
    assert parts.count("ktuberling") == 5 and parts.count("klettres") == 2
    assert not any("short" in f or "quiet" in f for f in files)
    for f in files:
        assert Path(f).exists()
    link = Path(next(f for f in files if "klettres" in f))
    assert link.is_symlink() and link.resolve().is_relative_to(roots["klettres"].resolve())
    digits, rate = sf.read(out / "fsdd" / "ann" / "digits_1.wav", dtype="int16")
    assert rate == 8000 and len(digits) == 10 * 2400 + 9 * 1200
    # a second run over the same folder gives the same list
    _run(monkeypatch, roots, out, tmp_path / "again.txt")
    assert (tmp_path / "again.txt").read_text() == listing.read_text()


@pytest.mark.parametrize("missing", ["ktuberling", "fsdd"])
def test_a_missing_source_stops_with_one_line_naming_it(tmp_path, monkeypatch, missing):
    roots = _fake_install(tmp_path, monkeypatch)
    roots[missing] = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as stop:
        _run(monkeypatch, roots, tmp_path / "ood", tmp_path / "ood_files.txt")
    assert str(tmp_path / "nowhere") in str(stop.value) and "\n" not in str(stop.value)
