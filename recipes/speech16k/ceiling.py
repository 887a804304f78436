"""What a model's encoder and decoder reach without its quantizer: the mean quality of the
decoded latents themselves (no codes) beside the decoded codes at some numbers of levels, on
the same files with `codec eval`'s metrics. Where the unquantized row is no better than the
codes, more bits cannot help: the encoder and decoder are the limit.

    python recipes/speech16k/ceiling.py -m speech16k \
        --files-from runs/NAME/eval_files.txt --levels 4 8 --every 3

`-m` takes a folder or a model's short name, as `codec` does. A file that cannot be read is
named on one line and left out; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch
import torch.nn.functional as F

from codec.audio import AudioError, read_for
from codec.errors import first_line
from codec.evaluate import Quality
from codec.fileio import read_file_list
from codec.models import Codec
from codec.models.folder import ModelFormatError
from codec.models.names import resolve_model

METRICS = ("mel", "stft", "si_sdr", "pesq", "stoi")


def decodings(model: Codec, wav: torch.Tensor, levels: list[int]) -> dict:
    """name -> wav (1, c, t) decoded: "latents" is the decoder on the encoder's output, "N levels"
    the first N levels of one `encode` at the most levels (a residual quantizer's first N
    levels are its N-level codes), so `decode(encode(wav, levels=N))`."""
    out = {"latents": model.decoder(model.encoder(wav))}
    codes = model.encode(wav, levels=max(levels))
    return out | {f"{n} levels": model.decode(codes[:, :, :n]) for n in levels}


def ceiling(paths, decode, rate: int, channels: int, problems: list[str]):
    """Mean of each metric per name of `decode(wav (1, c, t)) -> {name: decoded (1, c, t')}`
    over the readable files (NaNs left out), and the number of files scored. A file that cannot
    be read is named in `problems` and left out."""
    quality = Quality(rate, ("pesq", "stoi"))  # the columns below; DNSMOS is not one
    scores: dict = {}
    files = 0
    for path in paths:
        try:
            wav = read_for(path, rate, channels)
        except AudioError as err:
            problems.append(first_line(err))
            continue
        files += 1
        with torch.inference_mode():
            decoded_by_name = decode(wav[None])
        for name, decoded in decoded_by_name.items():
            decoded = decoded[0, :, : wav.shape[-1]]
            decoded = F.pad(decoded, (0, wav.shape[-1] - decoded.shape[-1]))  # a short decoder
            by_metric = scores.setdefault(name, {metric: [] for metric in METRICS})
            for metric, value in quality(decoded, wav).items():
                if metric in by_metric and not math.isnan(value):  # not the per-band list
                    by_metric[metric].append(value)
    means = {
        name: {m: sum(v) / len(v) if v else math.nan for m, v in by_metric.items()}
        for name, by_metric in scores.items()
    }
    return means, files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", required=True, help="model folder or short name")
    parser.add_argument("--files-from", required=True, help="one audio path a line")
    parser.add_argument("--levels", type=int, nargs="+", default=[4], help="numbers of levels")
    parser.add_argument("--every", type=int, default=1, help="every N-th file of the list")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        model = Codec.from_pretrained(resolve_model(args.model))
    except (FileNotFoundError, ModelFormatError) as err:
        sys.exit(first_line(err))
    if model.segmentation is not None:
        sys.exit(f"{args.model}: a segmented model (EnCodec 48 kHz) is not supported")
    if bad := [n for n in args.levels if not 1 <= n <= model.levels]:
        sys.exit(f"{args.model}: --levels {bad[0]}: the model has 1 to {model.levels} levels")
    try:
        paths = read_file_list(args.files_from)[:: args.every]
    except ValueError as err:
        sys.exit(str(err))

    problems: list[str] = []
    means, files = ceiling(
        paths,
        lambda wav: decodings(model, wav, args.levels),
        model.sample_rate,
        model.channels,
        problems,
    )
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"{args.model}: {files} files")
    print("decoded | kbps | mel | STFT | SI-SDR dB | PESQ | STOI")
    for name, m in means.items():
        kbps = "-" if name == "latents" else f"{model.bitrate(int(name.split()[0])) / 1000:g}"
        row = " | ".join(f"{m[k]:.3f}" if k != "si_sdr" else f"{m[k]:.2f}" for k in METRICS)
        print(f"{name} | {kbps} | {row}")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
