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
        _specgram(ax, wav, rate)
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


def _specgram(ax, wav: torch.Tensor, rate: int, db_range: tuple[float, float] | None = None):
    """The log spectrogram of wav (c, t), channels averaged, drawn on `ax`."""
    vmin, vmax = db_range if db_range is not None else (None, None)
    with np.errstate(divide="ignore"):  # digital silence has no log
        ax.specgram(
            wav.mean(0).numpy(), NFFT=512, Fs=rate, noverlap=384, cmap="magma", vmin=vmin, vmax=vmax
        )


def spectrogram_db_range(wav: torch.Tensor, rate: int, span_db: float = 80.0):
    """(peak - span_db, peak) in dB of wav's spectrogram as _specgram draws it: one colour scale
    for an original and its decodings, so a darker band is a weaker band."""
    from matplotlib import mlab

    power, _, _ = mlab.specgram(wav.mean(0).numpy(), NFFT=512, Fs=rate, noverlap=384)
    peak = 10 * float(np.log10(max(float(power.max()), 1e-20)))
    return peak - span_db, peak


def spectrogram_strip(
    path: Path, wav: torch.Tensor, rate: int, db_range: tuple[float, float] | None = None
) -> Path:
    """A small spectrogram of wav (c, t) alone as a PNG, kHz on the left (one per player of
    the listening page)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 1.35))
    _specgram(ax, wav, rate, db_range)
    ax.set_yticks(ax.get_yticks()[ax.get_yticks() <= rate / 2])
    ax.set_yticklabels([f"{t / 1000:g}" for t in ax.get_yticks()], fontsize=6)
    ax.tick_params(axis="x", labelsize=6, length=2, pad=1)
    ax.tick_params(axis="y", length=2, pad=1)
    ax.set_ylabel("kHz", fontsize=6, labelpad=1)
    ax.set_ylim(0, rate / 2)
    fig.subplots_adjust(left=0.09, right=0.995, top=0.97, bottom=0.15)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)
    return path


def mushra_plot(path: Path, points: list[tuple[str, str, float, float]]) -> Path:
    """MUSHRA means with 95% intervals: a point per (label, kind, mean, ci95 half-width or NaN),
    the MUSHRA grade bands behind; the hidden reference and anchors in grey."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(points) + 1.5), 3.4))
    for low, name in zip(range(0, 100, 20), ("bad", "poor", "fair", "good", "excellent")):
        ax.axhspan(low, low + 20, color="0.5", alpha=0.04 + 0.03 * (low // 20 % 2), lw=0)
        ax.text(len(points) - 0.45, low + 10, name, fontsize=7, va="center", color="0.45")
    for x, (_, kind, mean, ci95) in enumerate(points):
        colour = {"reference": "0.2", "anchor": "0.55"}.get(kind, "C0")
        ax.errorbar(x, mean, yerr=0 if np.isnan(ci95) else ci95, fmt="o", color=colour, capsize=3)
    labels = [label.replace(" ", "\n", 1) for label, *_ in points]
    ax.set_xticks(range(len(points)), labels, fontsize=7)
    ax.set_xlim(-0.6, len(points) - 0.4)
    ax.set_ylim(0, 100)
    ax.set_ylabel("MUSHRA score (mean, 95% CI)", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path
