"""How the demo's speech clips (recipes/demo/speech/*.flac) were made, to remake them or to make
others from the same source: Fish Fillets NG's dialogue (Debian fillets-ng-data-cs and
fillets-ng-data-nl, GPL-2), resampled to 16 kHz mono, scaled to peak at -1 dBFS, 16-bit FLAC.

    python recipes/demo/prepare_clips.py [--root /usr/share/games/fillets-ng] [--out DIR]

The clips are line z-v-forky of the game's ending ("Stop this jokes of yours. This is a very
special moment. So:") in Czech and in Dutch. Both are held out of the speech16k model's
training (they are in its run's heldout.txt), so the demo codes speech the model never saw.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codec.audio import AudioError, read_for, write_audio

# (clip name, file under the game's sound/ folder)
CLIPS = (
    ("cs_z-v-forky", "ending/cs/z-v-forky.ogg"),
    ("nl_z-v-forky", "ending/nl/z-v-forky.ogg"),
)
RATE = 16000
PEAK = 10 ** (-1 / 20)  # -1 dBFS: the Vorbis decodes overshoot 1.0 by a few percent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/usr/share/games/fillets-ng"))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "speech")
    args = parser.parse_args()
    for name, relative in CLIPS:
        source = args.root / "sound" / relative
        try:
            wav = read_for(source, RATE, 1)
        except AudioError as err:
            sys.exit(f"{err} (apt-get install fillets-ng-data-cs fillets-ng-data-nl)")
        wav = wav * (PEAK / float(wav.abs().max()))
        target = args.out / f"{name}.flac"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_audio(target, wav, RATE)
        print(f"{source} -> {target} ({wav.shape[-1] / RATE:.2f} s)")


if __name__ == "__main__":
    main()
