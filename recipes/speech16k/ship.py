"""Ship a trained model inside the package (codec/pretrained/NAME/), its weights stored as
float16, after checking that the rounding keeps its codes and audio:

python recipes/speech16k/ship.py RUN/model [--name speech16k] [--output DIR] [--files-from LIST]
    [--limit 20]

Prints, over the checked files, the share of codes that the float16 model gives unchanged and
the signal-to-difference ratio of its decoded audio against the float32 model's.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from codec.audio import read_for
from codec.fileio import read_file_list
from codec.models import Codec
from codec.models.folder import round_to_storage
from codec.models.names import PRETRAINED


def compare(reference: Codec, shipped: Codec, files: list[str]) -> tuple[float, float]:
    """(share of codes equal, signal-to-difference ratio in dB of the decoded audio)."""
    same = total = 0
    signal = difference = 0.0
    for path in files:
        wav = read_for(path, reference.sample_rate, reference.channels)[None]
        codes = reference.encode(wav)
        same += int((shipped.encode(wav) == codes).sum())
        total += codes.numel()
        expected = reference.decode(codes)
        signal += float(expected.square().sum())
        difference += float((shipped.decode(codes) - expected).square().sum())
    ratio = 10 * torch.log10(torch.tensor(signal / max(difference, 1e-30))).item()
    return same / max(total, 1), ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--name", default="speech16k")
    parser.add_argument("--output", type=Path, help="default: codec/pretrained/NAME")
    parser.add_argument("--files-from", type=Path, help="audio files to check, one a line")
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args()

    if not (args.model / "config.json").is_file():
        sys.exit(f"{args.model}: not a saved model folder (no config.json)")
    files = []
    if args.files_from:
        try:
            files = read_file_list(args.files_from)[: args.limit]
        except ValueError as err:
            sys.exit(str(err))
    reference = Codec.from_pretrained(args.model)
    model = Codec.from_pretrained(args.model, inference=False).eval()
    model.config = dataclasses.replace(model.config, model_id=args.name)
    round_to_storage(model, torch.float16)
    out = model.save_pretrained(args.output or PRETRAINED / args.name, storage=torch.float16)
    shipped = Codec.from_pretrained(out)
    size = (out / "model.safetensors").stat().st_size / 2**20
    print(f"{out}: model {args.name}, weights hash {shipped.model_hash}, {size:.2f} MiB")
    if files:
        same, ratio = compare(reference, shipped, files)
        print(
            f"float16 against float32 on {len(files)} files: {100 * same:.2f}% of codes equal, "
            f"decoded audio {ratio:.1f} dB signal-to-difference"
        )
        if ratio < 40:
            sys.exit("float16 storage changes the audio too much; ship float32 instead")


if __name__ == "__main__":
    main()
