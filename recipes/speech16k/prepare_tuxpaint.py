"""Gather the spoken stamp descriptions of Tux Paint (Debian package tuxpaint-stamps-default,
GPL-2) into one folder of symlinks: 7,433 recordings, 2.96 h, in 14 languages (Romanian,
Spanish, Russian, French, Bulgarian, Greek, Belarusian, Catalan and Danish above 5 minutes each),
Ogg Vorbis at 44.1 kHz, mono or stereo:

    python recipes/speech16k/prepare_tuxpaint.py OUT [--root /usr/share/tuxpaint/stamps]

A stamp's description is `<name>_desc_<language>.ogg` (`<name>_desc.ogg` is English);
OUT/<language>/<category path>/<file> -> the installed file. Nothing is copied or converted; the
trainer resamples and mixes down on the fly.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

from codec.fileio import link_into

DESCRIPTION = re.compile(r"_desc(?:_(?P<language>[A-Za-z]{2,3}(?:_[A-Z]{2})?))?\.(?:ogg|wav)")
INSTALL_HINT = "install it with `apt-get install tuxpaint-stamps-default`"


def language_of(name: str) -> str | None:
    """The language of a stamp description's file name, None for any other file."""
    match = DESCRIPTION.search(name)
    if match is None:
        return None
    return match.group("language") or "en"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--root", type=Path, default=Path("/usr/share/tuxpaint/stamps"))
    args = parser.parse_args()
    if not args.root.is_dir():
        sys.exit(f"{args.root}: no Tux Paint stamps there; {INSTALL_HINT}")
    counts: Counter[str] = Counter()
    for path in sorted(args.root.rglob("*_desc*")):
        language = language_of(path.name)
        if language is None or not path.is_file():
            continue
        link = args.out / language / path.relative_to(args.root)
        try:
            link_into(path, link)
        except ValueError as err:
            sys.exit(str(err))
        counts[language] += 1
    if not counts:
        sys.exit(f"{args.root}: no spoken descriptions (*_desc*.ogg); {INSTALL_HINT}")
    listed = ", ".join(f"{n} {language}" for language, n in counts.most_common())
    print(f"{args.out}: {sum(counts.values())} files ({listed})")


if __name__ == "__main__":
    main()
