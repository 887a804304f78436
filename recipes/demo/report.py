"""The demo recipe's report on one coded clip (the clip comes from scripts/heldout.py):

python recipes/demo/report.py RUN_DIR ORIGINAL.wav CLIP.codes DECODED.wav
    -> bitrate, SI-SDR and mel distance at every bandwidth, spectrogram PNG
"""

from __future__ import annotations

import sys
from pathlib import Path

from codec.audio import read_audio, read_for
from codec.codes_file import read_codes
from codec.metrics import MelDistance, si_sdr
from codec.models import Codec
from codec.quality import quality_by_level
from codec.report import spectrogram_figure


def report(run_dir: Path, original_path: Path, codes_path: Path, decoded_path: Path) -> None:
    model = Codec.from_pretrained(run_dir / "model")
    codes, header = read_codes(codes_path)
    wav = read_for(original_path, model.sample_rate, model.channels)
    decoded, _ = read_audio(decoded_path)
    mel = MelDistance(model.sample_rate)
    n = min(wav.shape[-1], decoded.shape[-1])
    size = codes_path.stat().st_size
    print(f"clip: {original_path.name}, {n / model.sample_rate:.2f} s at {model.sample_rate} Hz")
    print(
        f"file {codes_path.name}: {header.bitrate / 1000:.2f} kbps of codes "
        f"({header.levels} levels), {size} bytes with header = "
        f"{size * 8 / (n / model.sample_rate) / 1000:.2f} kbps"
    )
    estimate, reference = decoded[None, :, :n], wav[None, :, :n]
    print(
        f"at {header.bitrate / 1000:.2f} kbps: SI-SDR {float(si_sdr(estimate, reference)):.2f} dB, "
        f"mel distance {float(mel(estimate, reference)):.3f}"
    )

    def scores(estimate, reference):
        est, ref = estimate[None], reference[None]
        return {"si_sdr": float(si_sdr(est, ref)), "mel": float(mel(est, ref))}

    levels = range(1, model.levels + 1)
    (clip,) = quality_by_level(model, [wav], levels, scores)
    for count, score in clip.scores.items():
        print(
            f"  {model.bitrate(count) / 1000:5.2f} kbps ({count} levels): "
            f"SI-SDR {score['si_sdr']:6.2f} dB, mel distance {score['mel']:.3f}"
        )
    png = decoded_path.with_name("spectrograms.png")
    spectrogram_figure(png, wav, {("decoded", header.bitrate / 1000): decoded}, model.sample_rate)
    print(f"wrote {original_path}, {decoded_path} and {png}")


if __name__ == "__main__":
    report(*(Path(p) for p in sys.argv[1:]))
