"""recipes/speech16k/prepare_fillets.py on a small fake install: the links, and one-line errors
for a missing install and an output that cannot hold the links."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "recipes" / "speech16k" / "prepare_fillets.py"


def run(out, *args):
    command = [sys.executable, str(SCRIPT), str(out), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _fake_install(root: Path) -> Path:
    for language, name in [("cs", "a.ogg"), ("nl", "b.ogg"), ("nl", "c.ogg"), ("en", "d.ogg")]:
        path = root / "sound" / "level1" / language / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"OggS")
    return root


def test_links_the_czech_and_dutch_dialogue(tmp_path):
    root = _fake_install(tmp_path / "fillets")
    done = run(tmp_path / "out", "--root", root)
    assert done.returncode == 0, done.stderr
    assert "1 cs files, 2 nl files" in done.stdout
    link = tmp_path / "out" / "nl" / "level1" / "c.ogg"
    assert link.is_symlink() and link.resolve() == (root / "sound/level1/nl/c.ogg").resolve()
    assert not (tmp_path / "out" / "en").exists()
    assert run(tmp_path / "out", "--root", root).returncode == 0  # again: the links are kept


def test_a_missing_install_or_an_unusable_output_is_one_line(tmp_path):
    done = run(tmp_path / "out", "--root", tmp_path / "nothing")
    assert done.returncode == 1 and "apt-get install fillets-ng-data-cs" in done.stderr
    out = tmp_path / "file"
    out.write_text("a file where the folder should be")
    done = run(out, "--root", _fake_install(tmp_path / "fillets"))
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "a.ogg" in done.stderr and "cannot link" in done.stderr
