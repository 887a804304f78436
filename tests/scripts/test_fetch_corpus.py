"""scripts/fetch_corpus.py without a network: local archives and folders, and archives that try
to write outside their folder."""

import importlib.util
import io
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fetch_corpus.py"
spec = importlib.util.spec_from_file_location("fetch_corpus", SCRIPT)
fetch_corpus = importlib.util.module_from_spec(spec)
sys.modules["fetch_corpus"] = fetch_corpus
spec.loader.exec_module(fetch_corpus)


def test_a_local_archive_or_folder_is_used_instead_of_a_download(tmp_path, fsdd_root):
    speech = sorted(fsdd_root.glob("*.wav"))[:2]
    archive = tmp_path / "corpus.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in speech:
            tar.add(path, arcname=f"LibriTTS/dev-clean/{path.name}")
    out = fetch_corpus.fetch("libritts-dev-clean", tmp_path / "a", archive)
    assert sorted(p.name for p in out.rglob("*.wav")) == sorted(p.name for p in speech)
    # already there: used as it is, even with a source that does not exist
    assert fetch_corpus.fetch("libritts-dev-clean", out, tmp_path / "missing") == out
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(speech[0], folder)
    linked = fetch_corpus.fetch("fillets-music", tmp_path / "b", folder)
    assert linked.is_symlink() and (linked / speech[0].name).exists()


def test_archive_members_cannot_escape_the_output_folder(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        member = tarfile.TarInfo("../escaped.wav")
        member.size = 4
        tar.addfile(member, io.BytesIO(b"RIFF"))
    with pytest.raises(tarfile.OutsideDestinationError):
        fetch_corpus.fetch("libritts-dev-clean", tmp_path / "out", archive)
    assert not (tmp_path / "escaped.wav").exists()


def test_unknown_corpora_and_empty_sources_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="unknown corpus"):
        fetch_corpus.fetch("nope", tmp_path / "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no audio there"):
        fetch_corpus.fetch("fillets-music", tmp_path / "x", tmp_path / "empty")
