"""Decode the voice prompts of the Asterisk PBX (Debian asterisk-core-sounds-LANG-g722) into a
folder of 16 kHz FLAC: five professional voices, about 2.2 hours of read sentences, words,
digits and letters.

    python recipes/speech16k/prepare_asterisk.py OUT [--voices VOICE ...] [--root DIR]
    python recipes/speech16k/prepare_asterisk.py OUT --voices it_IT_m_Carlo \\
        --subset 45 15          # the demo's clips: 45 s to adapt on, 15 s held out

| voice | language | speaker | license |
|---|---|---|---|
| en_US_f_Allison | US English | Allison Smith | CC BY-SA 3.0 |
| es_MX_f_Allison | Mexican Spanish | Allison Smith | CC BY-SA 3.0 |
| fr_CA_f_June | Canadian French | June Wallack | CC BY-SA 3.0 |
| it_IT_m_Carlo | Italian | Carlo Flora | CC BY 3.0 |
| ru_RU_f_IvrvoiceRU | Russian | Maxim Topal's ivrvoice.ru | CC BY 3.0 |

(from /usr/share/doc/asterisk-core-sounds-*-g722/copyright). G.722 is 16 kHz wideband ADPCM at
64 kbps (50 Hz to 7 kHz); ffmpeg decodes it (`apt-get install ffmpeg`). OUT/<voice>/<path under
the voice's folder>.flac, 16-bit mono; the silence/ folder and decodes under 0.3 s are left out.
With --subset TRAIN HELD (seconds) only sentences are taken (not the digits/, letters/ and
phonetic/ words), in the order of a hash of their names, into OUT/train until TRAIN seconds and
then OUT/heldout until HELD seconds. OUT appears whole or not at all (built aside, renamed).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from codec.audio import write_audio

RATE = 16000
VOICES = (
    "en_US_f_Allison",
    "es_MX_f_Allison",
    "fr_CA_f_June",
    "it_IT_m_Carlo",
    "ru_RU_f_IvrvoiceRU",
)
WORD_FOLDERS = ("digits", "letters", "phonetic")
SHORTEST = 0.3  # seconds
INSTALL_HINT = "apt-get install asterisk-core-sounds-{en,es,fr,it,ru}-g722"


def decode_g722(path: Path) -> torch.Tensor:
    """A raw G.722 file -> (1, t) float32 at 16 kHz, through ffmpeg."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("decoding G.722 needs ffmpeg (apt-get install ffmpeg)")
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "g722", "-i", str(path)]
    done = subprocess.run(
        [*args, "-f", "s16le", "-ac", "1", "-ar", str(RATE), "-"], capture_output=True
    )
    if done.returncode != 0:
        raise ValueError(f"{path}: ffmpeg could not decode it ({done.stderr.decode()[:200]})")
    pcm = np.frombuffer(done.stdout, dtype="<i2").astype(np.float32) / 32768
    return torch.from_numpy(pcm)[None]


def prompts(root: Path, voice: str, words: bool = True) -> list[Path]:
    folder = root / voice
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not installed ({INSTALL_HINT})")
    found = sorted(folder.rglob("*.g722"))
    skip = {"silence"} | (set() if words else set(WORD_FOLDERS))
    return [p for p in found if p.relative_to(folder).parts[0] not in skip]


def hashed(paths: list[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: hashlib.sha1(p.name.encode()).digest())


def write_corpus(building: Path, root: Path, voices: list[str]) -> float:
    seconds = 0.0
    for voice in voices:
        for path in prompts(root, voice):
            wav = decode_g722(path)
            if wav.shape[-1] < SHORTEST * RATE:
                continue
            target = building / voice / path.relative_to(root / voice).with_suffix(".flac")
            write_audio(target, wav, RATE)
            seconds += wav.shape[-1] / RATE
    return seconds


def write_subset(building: Path, root: Path, voice: str, budgets: tuple[float, float]) -> float:
    chosen = hashed(prompts(root, voice, words=False))
    seconds = 0.0
    for split, budget in zip(("train", "heldout"), budgets):
        taken = 0.0
        while chosen and taken < budget:
            path = chosen.pop(0)
            wav = decode_g722(path)
            if wav.shape[-1] < SHORTEST * RATE:
                continue
            write_audio(building / split / path.with_suffix(".flac").name, wav, RATE)
            taken += wav.shape[-1] / RATE
        seconds += taken
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--voices", nargs="+", choices=VOICES, default=list(VOICES))
    parser.add_argument("--root", type=Path, default=Path("/usr/share/asterisk/sounds"))
    parser.add_argument("--subset", type=float, nargs=2, metavar=("TRAIN", "HELD"))
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"{args.out}: exists already; remove it to prepare it again")
    building = args.out.with_name(f".{args.out.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    try:
        if args.subset:
            if len(args.voices) != 1:
                sys.exit("--subset takes one voice (--voices NAME)")
            seconds = write_subset(building, args.root, args.voices[0], tuple(args.subset))
        else:
            seconds = write_corpus(building, args.root, args.voices)
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        sys.exit(str(err))
    building.rename(args.out)
    print(f"{args.out}: {seconds / 60:.1f} min of {', '.join(args.voices)}")


if __name__ == "__main__":
    main()
