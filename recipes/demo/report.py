"""make demo's report: the speech clips as the shipped model coded them (`codec encode` and
`codec decode`), beside Opus at the same bitrate.

    python recipes/demo/report.py OUT CLIP... [--kbps 6]

For each CLIP it reads OUT/codes/<name>.codes and OUT/decoded/<name>.wav, runs the clip
through opusenc --bitrate KBPS and opusdec (skipped, with one line saying how to install
opus-tools, when they are missing), prints mel distance, SI-SDR, and PESQ and STOI where the
pesq and pystoi packages are installed (codec.evaluate.Quality), and writes
OUT/original/<name>.wav, OUT/opus/<name>.wav and OUT/spectrograms/<name>.png (original, ours
and Opus stacked).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

from codec.audio import read_audio, read_for, write_audio
from codec.codes_file import read_codes
from codec.evaluate import OpusFailed, OpusUnavailable, Quality, opus_roundtrip, opus_tools
from codec.report import spectrogram_figure

COLUMNS = (("mel", "mel distance", "{:.3f}"), ("si_sdr", "SI-SDR dB", "{:.2f}"))
OPUS_MISSING = (
    "opusenc and opusdec not found (Debian/Ubuntu: apt-get install opus-tools; "
    "macOS: brew install opus-tools)"
)
OPTIONAL = (("pesq", "PESQ", "{:.2f}"), ("stoi", "STOI", "{:.3f}"))


def stored_kbps(path: Path, seconds: float) -> float:
    return path.stat().st_size * 8 / seconds / 1000


def code_clip(out: Path, clip: Path, opus_kbps: float | None, quality_for, workdir: Path):
    """One clip -> (rows {"codec", "kbps", "stored_kbps", metrics...} for ours and, unless
    `opus_kbps` is None, for Opus at that bitrate; seconds; sample rate)."""
    name = clip.stem
    codes_path = out / "codes" / f"{name}.codes"
    _, header = read_codes(codes_path)
    rate = header.sample_rate
    reference = read_for(clip, rate, header.channels)
    decoded, decoded_rate = read_audio(out / "decoded" / f"{name}.wav")
    if decoded_rate != rate or decoded.shape[-1] < reference.shape[-1]:
        raise ValueError(f"{out / 'decoded' / name}.wav: not the decoding of {codes_path}")
    decoded = decoded[:, : reference.shape[-1]]
    seconds = reference.shape[-1] / rate
    quality = quality_for(rate)
    ours = f"ours ({header.levels} levels)"
    rows = [
        {"codec": ours, "kbps": header.bitrate / 1000}
        | {"stored_kbps": stored_kbps(codes_path, seconds)}
        | quality(decoded, reference)
    ]
    write_audio(out / "original" / f"{name}.wav", reference, rate)
    shown = {(ours, header.bitrate / 1000): decoded}
    if opus_kbps is not None:
        opus, stored = opus_roundtrip(reference, rate, opus_kbps, workdir)
        rows.append({"codec": "Opus", "kbps": opus_kbps, "stored_kbps": stored})
        rows[-1] |= quality(opus, reference)
        write_audio(out / "opus" / f"{name}.wav", opus, rate)
        shown[("Opus", opus_kbps)] = opus
    spectrogram_figure(out / "spectrograms" / f"{name}.png", reference, shown, rate)
    return rows, seconds, rate


def table(rows: list[dict]) -> list[str]:
    """Rows as an aligned text table, with the optional metrics that were measured."""
    metrics = COLUMNS + tuple(m for m in OPTIONAL if any(m[0] in r for r in rows))
    widths = [max(7, len(title)) for _, title, _ in metrics]
    head = f"  {'':<16} {'kbps':>5} {'stored':>6}"
    lines = [head + "".join(f"  {t:>{w}}" for (_, t, _), w in zip(metrics, widths))]
    for row in rows:
        cells = [f"  {row['codec']:<16} {row['kbps']:>5.2f} {row['stored_kbps']:>6.2f}"]
        for (key, _, fmt), width in zip(metrics, widths):
            value = row.get(key, math.nan)
            cells.append(f"  {fmt.format(value) if math.isfinite(value) else '-':>{width}}")
        lines.append("".join(cells))
    return lines


def mean_rows(per_clip: list[list[dict]]) -> list[dict]:
    """The rows of every clip averaged, codec by codec (over the clips that have each value)."""
    out = []
    for position in range(max(len(rows) for rows in per_clip)):
        rows = [rows[position] for rows in per_clip if len(rows) > position]
        mean = {"codec": rows[0]["codec"], "kbps": rows[0]["kbps"]}
        for key in {k for r in rows for k in r} - {"codec", "kbps", "bands_db"}:
            values = [r[key] for r in rows if key in r and math.isfinite(r[key])]
            mean[key] = sum(values) / len(values) if values else math.nan
        out.append(mean)
    return out


def report(out: Path, clips: list[Path], kbps: float) -> None:
    qualities: dict[int, Quality] = {}

    def quality_for(rate: int) -> Quality:
        if rate not in qualities:
            qualities[rate] = Quality(rate)
        return qualities[rate]

    try:
        opus_tools()
    except OpusUnavailable:
        print(f"note: no Opus comparison: {OPUS_MISSING}")
        opus_kbps = None
    else:
        opus_kbps = kbps
    per_clip = []
    with tempfile.TemporaryDirectory(prefix="codec-demo-") as tmp:
        for clip in clips:
            rows, seconds, rate = code_clip(out, clip, opus_kbps, quality_for, Path(tmp))
            per_clip.append(rows)
            print(f"{clip.name} ({seconds:.2f} s at {rate} Hz):")
            print("\n".join(table(rows)))
    if len(per_clip) > 1:
        print(f"mean of {len(per_clip)} clips:")
        print("\n".join(table(mean_rows(per_clip))))
    print("kbps: the bitrate asked for; stored: the file's size (with its header) over time")
    print("mel distance: lower is better; SI-SDR, PESQ and STOI: higher is better")
    skipped = next(iter(qualities.values())).skipped
    if skipped:
        names = " and ".join(name.upper() for name in skipped)
        packages = " ".join("pystoi" if name == "stoi" else name for name in skipped)
        print(
            f"note: no {names}: pip install {packages} (pesq builds from source with a C "
            "compiler), or DEMO_EXTRAS=plot,eval make demo"
        )
    written = [out / d for d in ("original", "decoded", "opus", "spectrograms")]
    print("wrote " + ", ".join(f"{d}/" for d in written if d.is_dir()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("clips", type=Path, nargs="+")
    parser.add_argument("--kbps", type=float, default=6.0)
    args = parser.parse_args()
    try:
        report(args.out, args.clips, args.kbps)
    except (OSError, ValueError, OpusFailed) as err:  # CodesFormatError, AudioError: ValueError
        sys.exit(f"demo report: {err}")


if __name__ == "__main__":
    main()
