"""Gather an out-of-domain speech test set: other languages, speakers and recording chains than the
Czech and Dutch game dialogue the speech16k codec trains on.

    python recipes/speech16k/prepare_ood.py OUT [--list FILE] [--fsdd DIR]

Three parts, each a fixed, deterministic subset:

- ktuberling: spoken words of KDE's KTuberling (Debian package ktuberling-data, GPL-2+), Ogg
  Vorbis or WAV (French) at 22.05 / 44.1 kHz, one speaker a language; 9 languages x 8 files.
- klettres: spoken letters and syllables of KDE's KLettres (klettres-data, GPL-2+), Ogg Vorbis
  44.1 kHz, one speaker a language; 12 languages x 6 files.
- fsdd: the Free Spoken Digit Dataset (CC BY-SA 4.0, English, 6 speakers, 8 kHz narrowband
  WAV) from FSDD_ROOT; its clips (~0.4 s) are too short for STOI, so each file here is one take
  of the digits 0-9 by one speaker, joined with short pauses (4 takes x 6 speakers).

OUT/ktuberling/<language>/<file> and OUT/klettres/<language>/<alpha|syllab>/<file> link to the
installed files; OUT/fsdd/<speaker>/digits_<take>.wav are written. Files of at least 1 s with at
least 0.5 s within 40 dB of their loudest 20 ms are eligible (less speech gets no STOI); within a
language the eligible files whose path hashes lowest are taken, so the choice does not depend on
listing order. --list writes the sorted paths, one a line (OUT as given).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from codec.fileio import link_into

KTUBERLING_ROOT = Path("/usr/share/ktuberling/sounds")
KLETTRES_ROOT = Path("/usr/share/klettres")
# Languages with at least 12 (ktuberling) / 8 (klettres) eligible files, except Czech and
# Dutch (the training languages); klettres' da (128 kHz files, mostly silence) and tn (samples
# far beyond full scale) are left out too, and ktuberling's nn, stored as Opus (a reference that
# has been through Opus already would flatter Opus in the comparison).
KTUBERLING_LANGUAGES = ("ca", "da", "el", "en", "fr", "gl", "lt", "ru", "uk")
KLETTRES_LANGUAGES = ("ar", "de", "en", "en_GB", "fr", "he", "hu", "lt", "ml", "nds", "pt_BR", "uk")
KTUBERLING_PER_LANGUAGE = 8
KLETTRES_PER_LANGUAGE = 6
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
FSDD_TAKES = range(4)
MIN_SECONDS = 1.0
MIN_ACTIVE_SECONDS = 0.5
ACTIVE_RANGE_DB = 40.0
DIGIT_PAUSE_SECONDS = 0.15
INSTALL_HINT = "install it with `apt-get install ktuberling-data klettres-data`"


def pick(names: list[str], count: int) -> list[str]:
    """The `count` names whose SHA-1 is lowest, sorted: a fixed subset that does not depend on the
    order the names come in."""
    by_hash = sorted(names, key=lambda name: hashlib.sha1(name.encode()).hexdigest())
    return sorted(by_hash[:count])


def active_seconds(wav: np.ndarray, rate: int, frame_seconds: float = 0.02) -> float:
    """Seconds of wav (t,) in frames within ACTIVE_RANGE_DB of the loudest frame: what is left of
    a clip after the silence removal that STOI does (it needs ~0.4 s)."""
    hop = round(frame_seconds * rate)
    frames = len(wav) // hop
    energy = (wav[: frames * hop].reshape(frames, hop) ** 2).mean(1)
    if frames == 0 or energy.max() == 0:
        return 0.0
    return float((energy > energy.max() * 10 ** (-ACTIVE_RANGE_DB / 10)).sum() * frame_seconds)


def eligible(path: Path) -> bool:
    """At least MIN_SECONDS long with at least MIN_ACTIVE_SECONDS of speech."""
    if sf.info(path).duration < MIN_SECONDS:
        return False
    wav, rate = sf.read(path, always_2d=True)
    return active_seconds(wav.mean(1), rate) >= MIN_ACTIVE_SECONDS


def join_digits(clips: list[np.ndarray], rate: int, pause_seconds: float = DIGIT_PAUSE_SECONDS):
    """Clips (t_i,) -> one signal (sum t_i + pauses,), a pause of silence between neighbours."""
    pause = np.zeros(round(pause_seconds * rate), dtype=clips[0].dtype)
    pieces = [piece for clip in clips for piece in (pause, clip)][1:]
    return np.concatenate(pieces)


def gather_packaged(root: Path, languages, per_language: int, pattern: str, out: Path) -> dict:
    """Link a subset of the .ogg/.wav files root/<language>/<pattern> under out/<language>/...
    -> {language: [links]}."""
    if not root.is_dir():
        sys.exit(f"{root}: not found; {INSTALL_HINT}")
    built = {}
    for language in languages:
        files = sorted(p for p in (root / language).glob(pattern) if p.suffix in (".ogg", ".wav"))
        chosen = pick(
            [str(path.relative_to(root)) for path in files if eligible(path)], per_language
        )
        for name in chosen:
            link_into(root / name, out / name)
        built[language] = [out / name for name in chosen]
    return built


def gather_fsdd(root: Path, out: Path) -> dict:
    """Write out/<speaker>/digits_<take>.wav, digits 0-9 of one take -> {speaker: [files]}."""
    built = {}
    for speaker in FSDD_SPEAKERS:
        built[speaker] = []
        for take in FSDD_TAKES:
            clips, rates = [], set()
            for digit in range(10):
                path = root / f"{digit}_{speaker}_{take}.wav"
                if not path.is_file():
                    sys.exit(f"{path}: not found; FSDD_ROOT must be the FSDD recordings folder")
                clip, rate = sf.read(path, dtype="int16")
                clips.append(clip)
                rates.add(rate)
            if len(rates) != 1:
                sys.exit(f"{root}: {speaker} take {take} mixes sample rates {sorted(rates)}")
            target = out / speaker / f"digits_{take}.wav"
            target.parent.mkdir(parents=True, exist_ok=True)
            sf.write(target, join_digits(clips, rate), rate, subtype="PCM_16")
            built[speaker].append(target)
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--list", type=Path, help="write the sorted file list here")
    parser.add_argument("--fsdd", type=Path, default=os.environ.get("FSDD_ROOT"))
    parser.add_argument("--ktuberling", type=Path, default=KTUBERLING_ROOT)
    parser.add_argument("--klettres", type=Path, default=KLETTRES_ROOT)
    args = parser.parse_args()
    if args.fsdd is None:
        sys.exit(
            "FSDD_ROOT is not set: point it (or --fsdd) at the recordings folder of "
            "https://github.com/Jakobovski/free-spoken-digit-dataset"
        )
    parts = {
        "ktuberling": gather_packaged(
            args.ktuberling,
            KTUBERLING_LANGUAGES,
            KTUBERLING_PER_LANGUAGE,
            "*",
            args.out / "ktuberling",
        ),
        "klettres": gather_packaged(
            args.klettres,
            KLETTRES_LANGUAGES,
            KLETTRES_PER_LANGUAGE,
            "*/*",
            args.out / "klettres",
        ),
        "fsdd": gather_fsdd(args.fsdd, args.out / "fsdd"),
    }
    for part, built in parts.items():
        counts = ", ".join(f"{len(files)} {key}" for key, files in built.items())
        print(f"{args.out / part}: {counts}")
    if args.list is not None:
        files = sorted(
            str(f) for built in parts.values() for group in built.values() for f in group
        )
        args.list.parent.mkdir(parents=True, exist_ok=True)
        args.list.write_text("".join(f"{path}\n" for path in files))
        print(f"{args.list}: {len(files)} files")


if __name__ == "__main__":
    main()
