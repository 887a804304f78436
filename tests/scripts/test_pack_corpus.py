"""scripts/pack_corpus.py: a size-bounded, reproducible subset of a corpus's training files as
16 kHz mono FLAC, never one of the files a run holds out."""

import importlib.util
import sys
from pathlib import Path

import soundfile as sf

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pack_corpus.py"
spec = importlib.util.spec_from_file_location("pack_corpus", SCRIPT)
pack_corpus = importlib.util.module_from_spec(spec)
sys.modules["pack_corpus"] = pack_corpus
spec.loader.exec_module(pack_corpus)


def run(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["pack_corpus.py", *args])
    pack_corpus.main()


def test_packs_training_files_only_within_the_budget(tmp_path, monkeypatch, fsdd_root, capsys):
    src = tmp_path / "src"
    for index, path in enumerate(sorted(fsdd_root.glob("*.wav"))[:40]):
        link = src / f"speaker{index % 2}" / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
    train, held_out = pack_corpus.training_records(src, "speech16k_gpu")
    assert held_out == 4 and len(train) == 36  # valid and test fractions 0.05 of 40 files

    budget = 0.25  # MiB: some of the 36 files, not all
    run(monkeypatch, str(src), str(tmp_path / "a"), "--max-mib", str(budget))
    run(monkeypatch, str(src), str(tmp_path / "b"), "--max-mib", str(budget))
    flacs = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.flac"))
    assert 0 < len(flacs) < len(train)
    assert flacs == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.flac"))
    assert sum((tmp_path / "a" / p).stat().st_size for p in flacs) <= budget * 2**20

    keys = {Path(r.key).with_suffix(".flac") for r in train}
    assert set(flacs) <= keys  # no held-out file, each under its own relative path
    info = sf.info(str(tmp_path / "a" / flacs[0]))
    assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
    listed = (tmp_path / "a" / pack_corpus.MANIFEST).read_text().splitlines()
    assert listed[0].startswith(f"# {len(flacs)} of the 36 training files")
    assert sorted(Path(line.split("\t")[0]) for line in listed[1:]) == flacs

    capsys.readouterr()
    run(monkeypatch, str(src), str(tmp_path / "a"))  # packed already: left as it is
    assert "already packed" in capsys.readouterr().out
