"""recipes/speech16k/prepare_tuxpaint.py on a small fake install: which files are descriptions,
their language, the links, and the one-line errors for a missing source."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "recipes" / "speech16k" / "prepare_tuxpaint.py"
spec = importlib.util.spec_from_file_location("prepare_tuxpaint", SCRIPT)
prepare_tuxpaint = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prepare_tuxpaint)


@pytest.mark.parametrize(
    "name, language",
    [
        ("frog-1_desc_be.ogg", "be"),
        ("frog-1_desc.ogg", "en"),
        ("cat_desc_pt_BR.wav", "pt_BR"),
        ("hat_desc_da.ogg.ogg", "da"),
        ("frog-1.ogg", None),  # the stamp's sound effect, not speech
        ("frog-1.png", None),
        ("frog-1_desc.txt", None),
    ],
)
def test_language_of_a_description(name, language):
    assert prepare_tuxpaint.language_of(name) == language


def run(*args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True
    )


def test_links_each_description_under_its_language(tmp_path):
    root = tmp_path / "stamps"
    for name in [
        "animals/frog_desc_fr.ogg",
        "animals/frog_desc.ogg",
        "animals/frog.ogg",
        "food/fruit/apple_desc_ru.ogg",
        "food/fruit/apple.png",
    ]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"OggS")
    out = tmp_path / "out"
    done = run(out, "--root", root)
    assert done.returncode == 0, done.stderr
    assert "3 files" in done.stdout
    links = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_symlink())
    assert links == [
        "en/animals/frog_desc.ogg",
        "fr/animals/frog_desc_fr.ogg",
        "ru/food/fruit/apple_desc_ru.ogg",
    ]
    assert (out / "ru/food/fruit/apple_desc_ru.ogg").resolve() == (
        root / "food/fruit/apple_desc_ru.ogg"
    ).resolve()
    assert run(out, "--root", root).returncode == 0  # again: the links are kept


def test_a_missing_install_is_one_line(tmp_path):
    done = run(tmp_path / "out", "--root", tmp_path / "nothing")
    assert done.returncode == 1 and "apt-get install tuxpaint-stamps-default" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    done = run(tmp_path / "out", "--root", tmp_path / "empty")
    assert done.returncode == 1 and "no spoken descriptions" in done.stderr


def test_an_output_that_cannot_hold_the_links_is_one_line(tmp_path):
    root = tmp_path / "stamps"
    (root / "animals").mkdir(parents=True)
    (root / "animals" / "frog_desc_fr.ogg").write_bytes(b"OggS")
    out = tmp_path / "out"
    out.write_text("a file where the folder should be")
    done = run(out, "--root", root)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "frog_desc_fr.ogg" in done.stderr and "cannot link" in done.stderr
