"""Gather the Czech and Dutch dialogue of Fish Fillets NG (Debian packages fillets-ng-data-cs and
fillets-ng-data-nl: Ogg Vorbis, mostly 22.05 kHz) into one folder of symlinks:

    python recipes/speech16k/prepare_fillets.py OUT [--root /usr/share/games/fillets-ng]

OUT/<language>/<level>/<file>.ogg -> the installed file. Nothing is copied or converted; the
trainer resamples on the fly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codec.fileio import link_into

LANGUAGES = ("cs", "nl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--root", type=Path, default=Path("/usr/share/games/fillets-ng"))
    args = parser.parse_args()
    counts = {}
    for language in LANGUAGES:
        files = sorted(args.root.glob(f"sound/*/{language}/*.ogg"))
        counts[language] = len(files)
        for path in files:
            link = args.out / language / path.parent.parent.name / path.name
            try:
                link_into(path, link)
            except ValueError as err:
                sys.exit(str(err))
    if not any(counts.values()):
        sys.exit(
            f"no dialogue under {args.root}/sound/*/{{cs,nl}}: install it with "
            "`apt-get install fillets-ng-data-cs fillets-ng-data-nl`, or pass DATA=/your/folder"
        )
    print(f"{args.out}: " + ", ".join(f"{n} {lang} files" for lang, n in counts.items()))


if __name__ == "__main__":
    main()
