"""Fetch a public corpus into a folder, or use one that is already there.

    python scripts/fetch_corpus.py NAME OUT [--from PATH]

NAME is one of the corpora below. OUT that already holds audio is used as it is (nothing is
downloaded); `--from PATH` links an existing local copy (a folder or the downloaded archive)
instead of downloading. Archives are unpacked with tarfile's "data" filter, so no member can
land outside OUT or be a device, and are removed afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from codec.train.data import find_audio

CORPORA = {
    # name: (what it is, where it comes from: an archive URL or a folder installed by Debian)
    "libritts-dev-clean": (
        "LibriTTS dev-clean, 24 kHz read English, 9 h",
        "https://www.openslr.org/resources/60/dev-clean.tar.gz",
    ),
    "libritts-train-clean-100": (
        "LibriTTS train-clean-100, 24 kHz read English, 54 h",
        "https://www.openslr.org/resources/60/train-clean-100.tar.gz",
    ),
    "fillets-music": (
        "Fish Fillets NG music, ~25 min (apt-get install fillets-ng-data)",
        "/usr/share/games/fillets-ng/music",
    ),
}
# Fish Fillets NG's Czech and Dutch dialogue (the speech16k corpus) is gathered by
# recipes/speech16k/prepare_fillets.py: its sound folder also holds English speech and sound
# effects.


def has_audio(folder: Path) -> bool:
    return folder.is_dir() and bool(find_audio(folder))


def unpack(archive: Path, out: Path) -> None:
    """Into OUT.partial first, renamed when complete: an interrupted unpack is not taken for
    a corpus by the next run."""
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(partial, filter="data")
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    partial.rename(out)


def fetch(name: str, out: Path, source: Path | None = None) -> Path:
    if name not in CORPORA:
        raise SystemExit(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    if has_audio(out):
        print(f"{out}: already holds audio; using it")
        return out
    origin = source or CORPORA[name][1]
    if isinstance(origin, str) and origin.startswith("https://"):
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            archive = Path(tmp) / Path(origin).name
            print(f"downloading {origin}")
            with urllib.request.urlopen(origin) as response, open(archive, "wb") as handle:
                shutil.copyfileobj(response, handle)
            unpack(archive, out)
    else:
        origin = Path(origin)
        if origin.is_file():
            unpack(origin, out)
        elif has_audio(origin):
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.is_symlink():
                out.unlink()
            out.symlink_to(origin.resolve(), target_is_directory=True)
        else:
            raise SystemExit(f"{origin}: no audio there ({CORPORA[name][0]})")
    if not has_audio(out):
        raise SystemExit(f"{out}: no audio after fetching {name}")
    print(f"{out}: {name} ready")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help=", ".join(CORPORA))
    parser.add_argument("out", type=Path)
    parser.add_argument("--from", dest="source", type=Path, help="a local folder or archive")
    args = parser.parse_args()
    try:
        fetch(args.name, args.out, args.source)
    except (OSError, tarfile.TarError) as err:
        sys.exit(f"{args.source or args.name}: {err}")


if __name__ == "__main__":
    main()
