"""Where in frequency a model's decoded audio departs from its input: per group of mel bands,
the mean log-mel error (decoded minus input, in dB) and its mean absolute value, over the
frames within 30 dB of each file's loudest (speech, not the pauses), at one bitrate.

    python recipes/speech16k/band_bias.py -m speech16k \
        --files-from runs/NAME/eval_files.txt --bandwidth 6 --every 5

`-m` takes a folder or a model's short name, as `codec` does. A file that cannot be read is
named on one line and left out; the exit status is then 1.

A negative bias over a range of bands is a spectral tilt: the codec plays those frequencies
quieter than the input. STOI removes a fixed gain per band (it normalises each band's level over
384 ms) and PESQ partly equalises the frequency response; mel distance counts it in full.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torchaudio

from codec.audio import AudioError, read_for
from codec.errors import first_line
from codec.fileio import read_file_list
from codec.models import Codec
from codec.models.folder import ModelFormatError
from codec.models.names import resolve_model

N_FFT, HOP, MELS, GROUPS = 1024, 256, 64, 8


def band_bias(paths, decode, rate: int, channels: int, problems: list[str] | None = None):
    """Per mel band (MELS of them, slaney): the mean and the mean absolute log-mel error in dB of
    `decode(wav)` against each file's audio `wav` (1, channels, t) at `rate`, over the frames
    within 30 dB of the file's loudest; and each band's peak frequency in Hz. A file that cannot
    be read is left out and named in `problems` (raised when `problems` is None).
    -> (bias (MELS,), error (MELS,), hz (MELS,), frames)"""
    mel = torchaudio.transforms.MelSpectrogram(
        rate, n_fft=N_FFT, hop_length=HOP, n_mels=MELS, power=2.0, norm="slaney", mel_scale="slaney"
    )
    bank = torchaudio.functional.melscale_fbanks(
        N_FFT // 2 + 1, 0.0, rate / 2, MELS, rate, "slaney", "slaney"
    )
    hz = bank.argmax(0) * rate / N_FFT
    bias, error, frames = torch.zeros(MELS), torch.zeros(MELS), 0
    for path in paths:
        try:
            wav = read_for(path, rate, channels)[None]
        except AudioError as err:
            if problems is None:
                raise
            problems.append(first_line(err))
            continue
        with torch.inference_mode():
            decoded = decode(wav)[..., : wav.shape[-1]]
        ref = 10 * mel(wav.mean(1)).clamp(min=1e-10).log10()[0]  # (mels, frames) dB
        out = 10 * mel(decoded.mean(1)).clamp(min=1e-10).log10()[0]
        loud = ref.max(0).values > ref.max() - 30
        diff = (out - ref)[:, loud]
        bias, error, frames = bias + diff.sum(1), error + diff.abs().sum(1), frames + diff.shape[1]
    return bias / max(frames, 1), error / max(frames, 1), hz, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", required=True, help="model folder or short name")
    parser.add_argument("--files-from", required=True, help="one audio path a line")
    parser.add_argument("--bandwidth", type=float, default=6.0, help="kbps")
    parser.add_argument("--every", type=int, default=1, help="every N-th file of the list")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        model = Codec.from_pretrained(resolve_model(args.model))
    except (FileNotFoundError, ModelFormatError) as err:
        sys.exit(first_line(err))
    try:
        paths = read_file_list(args.files_from)[:: args.every]
    except ValueError as err:
        sys.exit(str(err))

    def decode(wav):
        return model.decode(model.encode(wav, bandwidth=args.bandwidth))

    problems: list[str] = []
    bias, error, hz, frames = band_bias(paths, decode, model.sample_rate, model.channels, problems)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    used = len(paths) - len(problems)
    print(f"{args.model}: {used} files, {frames} frames, {args.bandwidth:g} kbps")
    print("mel bands | Hz | bias dB | |error| dB")
    for g, (b, e) in enumerate(zip(bias.view(GROUPS, -1), error.view(GROUPS, -1))):
        low, high = g * MELS // GROUPS, (g + 1) * MELS // GROUPS - 1
        print(f"{low}-{high} | {hz[low]:.0f}-{hz[high]:.0f} | {b.mean():+.1f} | {e.mean():.1f}")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
