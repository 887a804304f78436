"""Figures and tables for evaluation reports: a markdown table, a rate-distortion plot and
spectrogram comparisons (matplotlib, drawn off-screen)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from codec.equivalent_rate import EquivalentRate
from codec.fileio import atomic_write

LABELS = {
    "mel": "mel distance (lower is better)",
    "stft": "STFT distance (lower is better)",
    "si_sdr": "SI-SDR dB",
    "pesq": "PESQ",
    "stoi": "STOI",
    "dnsmos_sig": "DNSMOS SIG",
    "dnsmos_bak": "DNSMOS BAK",
    "dnsmos_ovrl": "DNSMOS OVRL",
    "dnsmos_p808": "DNSMOS P.808",
    "band_db": "worst band dB (0 is best)",
}
FORMATS = {"si_sdr": "{:.2f}", "pesq": "{:.2f}", "band_db": "{:+.1f}"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def markdown_table(result, means: list[dict] | None = None) -> str:
    """The means per codec and bandwidth (`result.summary()` unless given) as a markdown table,
    with notes on what was skipped."""
    means = result.summary() if means is None else means
    metrics = [m for m in LABELS if any(m in row for row in means)]
    head = ["codec", "target kbps", "file kbps", *(_short(m) for m in metrics)]
    head.append("entropy-coded kbps")
    lines = _table_head(head)
    for row in means:
        name = row["codec"] + (f" ({row['levels']} levels)" if "levels" in row else "")
        kbps = row["target_kbps"]
        cells = [name, "-" if kbps is None else f"{kbps:g}", _number(row.get("file_kbps"))]
        cells += [FORMATS.get(m, "{:.3f}").format(row[m]) if m in row else "-" for m in metrics]
        cells.append(_number(row.get("entropy_kbps")))
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    equivalent = result.opus_equivalent(means)
    if equivalent:
        text += "\n" + opus_equivalent_table(equivalent, metrics)
    notes = [f"Files: {result.files}, failed: {len(result.problems)}."]
    if any(row["codec"] == "input" for row in means):
        notes.append("input: the non-intrusive scores (DNSMOS) of the input itself.")
    if "band_db" in metrics:
        notes.append(
            "worst band: decoded minus input level in the half-octave band (100 Hz to 7 kHz) "
            "farthest from 0 dB, from the mean error per band (summary.json: bands_db)."
        )
    notes += [f"{name} skipped: {why}." for name, why in result.skipped_metrics.items()]
    notes += [f"- {problem}" for problem in result.problems]
    return text + "\n" + "\n".join(notes) + "\n"


def opus_equivalent_table(equivalent: dict[str, dict[str, dict]], metrics: list[str]) -> str:
    """Per bandwidth of ours (rows) and metric (columns): the Opus rate that scores the same
    (codec.equivalent_rate; "<6": even Opus's lowest rate scores as well, ">16": none does)."""
    metrics = [m for m in metrics if any(m in rates for rates in equivalent.values())]
    lines = _table_head(["ours at kbps", *(_short(m) for m in metrics)])
    for kbps, rates in equivalent.items():
        cells = [kbps]
        for m in metrics:
            rate = rates.get(m)
            cells.append("-" if rate is None else str(EquivalentRate(**rate)))
        lines.append("| " + " | ".join(cells) + " |")
    title = "Opus-equivalent bitrate (kbps): the Opus rate, interpolated, that scores as ours does"
    return title + "\n\n" + "\n".join(lines) + "\n"


def _short(metric: str) -> str:
    return LABELS[metric].split(" (")[0]


def _number(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table_head(head: list[str]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def rate_distortion_plot(path: Path, means: list[dict]) -> Path:
    """One panel per metric: metric against file kbps, a line per codec."""
    plt = _pyplot()
    metrics = [m for m in LABELS if any(m in row for row in means)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for codec, style in (("codec", "o-"), ("opus", "s--")):
            rows = [r for r in means if r["codec"] == codec and metric in r]
            if rows:
                xs = [r["file_kbps"] for r in rows]
                ax.plot(xs, [r[metric] for r in rows], style, label=codec)
        for row in (r for r in means if r["codec"] == "input" and metric in r):
            ax.axhline(row[metric], color="gray", linestyle=":", label="input")
        ax.set_xlabel("kbps (files as stored)")
        ax.set_title(LABELS[metric], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def spectrogram_plot(reference: torch.Tensor, decoded: dict, rate: int):
    """A matplotlib figure: log spectrograms of the reference and of each (codec, kbps)
    decoding, stacked."""
    plt = _pyplot()
    panels = [("original", reference)] + [(f"{c} {k:g} kbps", w) for (c, k), w in decoded.items()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.8 * len(panels)), sharex=True)
    axes = axes if len(panels) > 1 else [axes]
    for ax, (title, wav) in zip(axes, panels):
        with np.errstate(divide="ignore"):  # digital silence has no log
            ax.specgram(wav.mean(0).numpy(), NFFT=512, Fs=rate, noverlap=384, cmap="magma")
        ax.set_ylabel("Hz")
        ax.set_title(title, fontsize=9)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    return fig


def spectrogram_figure(
    path: Path, reference: torch.Tensor, decoded: dict[tuple[str, float], torch.Tensor], rate: int
) -> Path:
    """spectrogram_plot written to a PNG file."""
    fig = spectrogram_plot(reference, decoded, rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    _pyplot().close(fig)
    return path
