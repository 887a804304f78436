"""What a model's encoder and decoder reach without its quantizer: the mean quality of the
decoded latents themselves (no codes) beside the decoded codes at some numbers of levels, on
the same files with `codec eval`'s metrics and coding path (codec.quality). Where the
unquantized row is no better than the codes, more bits cannot help: the encoder and decoder are
the limit.

    python recipes/speech16k/ceiling.py -m speech16k \
        --files-from runs/NAME/eval_files.txt --levels 4 8 --every 3

`-m` takes a folder or a model's short name, as `codec` does. A file that cannot be read is
named on one line and left out; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Iterator

import torch

from codec.audio import AudioError, read_for
from codec.errors import first_line
from codec.evaluate import Quality
from codec.fileio import read_file_list
from codec.models import Codec
from codec.models.folder import ModelFormatError
from codec.models.names import resolve_model
from codec.quality import quality_by_level

METRICS = ("mel", "stft", "si_sdr", "pesq", "stoi")


def readable(paths, rate: int, channels: int, problems: list[str]) -> Iterator[torch.Tensor]:
    """wav (c, t) at `rate` of each file that can be read; the others named in `problems`."""
    for path in paths:
        try:
            yield read_for(path, rate, channels)
        except AudioError as err:
            problems.append(first_line(err))


def rows(model: Codec, wavs, levels: list[int], metrics) -> Iterator[dict[str, dict]]:
    """Per clip, name -> scores: "latents" for the encoder's output decoded without the
    quantizer, "N levels" for the codes of `codec encode -q N` decoded as `codec decode` does
    (codec.quality: one encode, the same windows and loudness handling)."""
    for clip in quality_by_level(model, wavs, levels, metrics, unquantized=True):
        yield {"latents": clip.unquantized} | {f"{n} levels": s for n, s in clip.scores.items()}


def scorer(rate: int) -> Quality:
    """`codec eval`'s metrics, of the optional ones only those the table shows."""
    return Quality(rate, optional=("pesq", "stoi"))


def mean_scores(scored: Iterable[dict[str, dict]]) -> tuple[dict, int]:
    """The mean of each metric of METRICS per name over the clips (NaNs left out), and the
    number of clips."""
    values: dict = {}
    files = 0
    for by_name in scored:
        files += 1
        for name, scores in by_name.items():
            by_metric = values.setdefault(name, {metric: [] for metric in METRICS})
            for metric in METRICS:
                value = scores.get(metric, math.nan)
                if not math.isnan(value):
                    by_metric[metric].append(value)
    means = {
        name: {m: sum(v) / len(v) if v else math.nan for m, v in by_metric.items()}
        for name, by_metric in values.items()
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
    wavs = readable(paths, model.sample_rate, model.channels, problems)
    means, files = mean_scores(rows(model, wavs, args.levels, scorer(model.sample_rate)))
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
