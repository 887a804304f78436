"""Undo a trained model's spectral tilt: measure, on training files, the gain per frequency
that brings its decoded audio to its input's level, and fold a minimum-phase FIR filter of
that response into its decoder's last conv (codec.equalize):

    python scripts/heldout.py RUN --split train | awk 'NR % 20 == 1' > train.txt
    python recipes/speech16k/equalize.py RUN/model --files-from train.txt -o RUN/equalized \
        [--bandwidth 6] [--taps 64] [--smooth 0.5] [--max-db 12]

Prints the measured gain per half-octave band and, after folding, the gain still to go on the
same files (near zero unless the filter is too short for the response). The model is saved
in float32 (`ship.py` rounds it for the package). A file that cannot be read is named on one
line and left out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from codec.audio import AudioError, read_for
from codec.equalize import (
    fold_output_filter,
    folded_config,
    minimum_phase_fir,
    output_gain_db,
    smooth_db,
)
from codec.errors import first_line
from codec.fileio import read_file_list
from codec.metrics import BAND_EDGES_HZ
from codec.models import Codec


def read_all(files: list[str], model: Codec, problems: list[str]) -> list:
    """Each readable file's audio (channels, t) at the model's rate; the others named in
    `problems`, one line each."""
    waves = []
    for path in files:
        try:
            waves.append(read_for(path, model.sample_rate, model.channels))
        except AudioError as err:
            problems.append(f"{path}: {first_line(err)}")
    return waves


def band_means(gain_db: torch.Tensor, hz: torch.Tensor) -> str:
    means = [
        gain_db[(hz >= lo) & (hz < hi)].mean().item()
        for lo, hi in zip(BAND_EDGES_HZ, BAND_EDGES_HZ[1:])
    ]
    return " ".join(f"{v:+.1f}" for v in means)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a saved model folder")
    parser.add_argument("--files-from", type=Path, required=True, help="training files")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--bandwidth", type=float, default=6.0)
    parser.add_argument("--taps", type=int, default=64)
    parser.add_argument("--smooth", type=float, default=0.5, help="octaves")
    parser.add_argument("--max-db", type=float, default=12.0, help="largest boost or cut")
    args = parser.parse_args()
    if args.taps < 1:
        parser.error(f"--taps must be at least 1, got {args.taps}")
    try:
        files = read_file_list(args.files_from)
        model = Codec.from_pretrained(args.model, inference=False).eval()
        measured = Codec.from_pretrained(args.model)
    except (ValueError, OSError) as err:
        sys.exit(first_line(err))
    try:  # a model that takes no filter, or none this long, stops here, before measuring
        folded_config(model, args.taps)
    except ValueError as err:
        sys.exit(f"{args.model}: cannot take a {args.taps}-tap output filter ({first_line(err)})")
    problems: list[str] = []
    audio = read_all(files, measured, problems)
    gain, hz = output_gain_db(measured, audio, args.bandwidth)
    print(
        f"gain per band {BAND_EDGES_HZ[0]:.0f}-{BAND_EDGES_HZ[-1]:.0f} Hz (dB): "
        f"{band_means(gain, hz)}"
    )
    target = smooth_db(gain, hz, args.smooth).clamp(-args.max_db, args.max_db)
    equalized = fold_output_filter(model, minimum_phase_fir(target, args.taps))
    try:
        out = equalized.save_pretrained(args.output)
    except OSError as err:
        sys.exit(f"{args.output}: cannot write the model ({first_line(err)})")
    after, _ = output_gain_db(Codec.from_pretrained(out), audio, args.bandwidth)
    print(f"after folding {args.taps} taps, still to go (dB): {band_means(after, hz)}")
    print(f"{out}: decoder.last_kernel_size {equalized.config.decoder['last_kernel_size']}")
    for line in problems:
        print(line, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
