"""`codec eval`: quality against bitrate, per file and on average, for the model and for Opus.

    files -> reference audio at the model rate -> DNSMOS of the input itself
          -> codec: encode once, decode at each bandwidth -> metrics, code statistics
             (codec.quality.quality_by_level)
          -> opusenc --bitrate K / opusdec at each rate of the Opus ladder, if compared -> metrics
    -> results.csv (a row per file, codec and bandwidth), summary.json (means, per-band
       errors, Opus-equivalent bitrates), report.md, rate_distortion.png, spectrograms/*.png

Metrics: multi-scale mel distance and multi-resolution STFT distance (lower is better), SI-SDR
(dB), the band-level error (codec.metrics.band_error_db: dB of the band farthest from the
input's level), and where the `eval` extra is installed PESQ (wide-band at 16 kHz, narrow-band
at 8 kHz; other rates are resampled to 16 kHz), STOI, and DNSMOS P.835 / P.808 (codec.dnsmos),
which no loss here trains toward. `file_kbps` is what is stored: .codes files with their header,
Ogg Opus files with theirs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from codec.audio import AudioError, read_audio, read_for, resample, write_audio
from codec.codes_file import encode_codes_bytes
from codec.coding import Windowing, codes_header
from codec.dnsmos import KEYS as DNSMOS_KEYS
from codec.equivalent_rate import equivalent_rate
from codec.losses import MultiResolutionSTFTLoss
from codec.metrics import (
    BAND_EDGES_HZ,
    MelDistance,
    band_error_db,
    code_statistics,
    si_sdr,
    worst_band,
)
from codec.models import Codec
from codec.quality import quality_by_level

METRICS = ("mel", "stft", "si_sdr", "pesq", "stoi", *DNSMOS_KEYS, "band_db")
HIGHER_IS_BETTER = {"si_sdr", "pesq", "stoi", *DNSMOS_KEYS}
OPTIONAL_METRICS = ("pesq", "stoi", "dnsmos")  # from the eval extra; --metrics may leave out
OPUS_LADDER = (6.0, 8.0, 10.0, 12.0, 16.0)  # kbps; libopus codes narrowband below about 9
INPUT = "input"  # the rows that score the input itself (DNSMOS: what the recording allows)


class OpusUnavailable(RuntimeError):
    pass


class OpusFailed(RuntimeError):
    """opusenc or opusdec failed on one file."""


def opus_tools() -> tuple[str, str]:
    enc, dec = shutil.which("opusenc"), shutil.which("opusdec")
    if not enc or not dec:
        raise OpusUnavailable(
            "--compare opus needs opusenc and opusdec (Debian/Ubuntu: apt-get install opus-tools)"
        )
    return enc, dec


def opus_roundtrip(wav: torch.Tensor, rate: int, kbps: float, workdir: Path):
    """wav (c, t) through `opusenc --bitrate kbps` and `opusdec` -> (decoded (c, t) at `rate`,
    file kbps). Opus does not go below about 6 kbps: lower targets cost what 6 kbps costs."""
    enc, dec = opus_tools()
    source, coded, decoded = workdir / "in.wav", workdir / "coded.opus", workdir / "out.wav"
    write_audio(source, wav, rate)
    for cmd in (
        [enc, "--quiet", "--bitrate", f"{kbps:g}", str(source), str(coded)],
        [dec, "--quiet", "--rate", "48000", str(coded), str(decoded)],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise OpusFailed(f"{Path(cmd[0]).name} failed: {done.stderr.strip()[:200]}")
    out, out_rate = read_audio(decoded)
    out = resample(out, out_rate, rate)[:, : wav.shape[-1]]
    out = F.pad(out, (0, wav.shape[-1] - out.shape[-1]))
    return out, coded.stat().st_size * 8 / (wav.shape[-1] / rate) / 1000


class Quality:
    """The metrics of one decoded signal against its reference, both (c, t) at `rate`.
    `optional` names the optional metrics to run where installed (default: all of
    OPTIONAL_METRICS)."""

    def __init__(self, rate: int, optional=OPTIONAL_METRICS):
        self.rate = rate
        self.mel = MelDistance(rate)
        self.stft = MultiResolutionSTFTLoss()
        # signals up to the largest FFT window are zero-padded (reflection padding needs more)
        self.shortest = max([m.n_fft for m in self.mel.mels] + list(self.stft.n_ffts))
        self.pesq, self.stoi, self.dnsmos, self.skipped = _optional_metrics(set(optional))

    @torch.no_grad()
    def __call__(self, estimate: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
        est, ref = estimate[None].float(), reference[None].float()
        if est.shape[-1] <= self.shortest:
            pad = self.shortest + 1 - est.shape[-1]
            est, ref = F.pad(est, (0, pad)), F.pad(ref, (0, pad))
        out = {
            "mel": float(self.mel(est, ref)),
            "stft": float(self.stft(est, ref)),
            "si_sdr": float(si_sdr(est, ref)),
        }
        silent = float(ref.pow(2).sum()) < 1e-12
        if silent:  # these are ratios to the reference's energy
            out["stft"] = out["si_sdr"] = math.nan
        mono_est, mono_ref = estimate.mean(0), reference.mean(0)
        if self.pesq is not None:
            out["pesq"] = self._pesq(mono_est, mono_ref)
        if self.stoi is not None:
            out["stoi"] = self._stoi(mono_est, mono_ref)
        bands = band_error_db(estimate, reference, self.rate)
        if silent:
            bands = torch.full_like(bands, math.nan)
        out["band_db"], out["bands_db"] = worst_band(bands), bands.tolist()
        return out | self.of_input(estimate)

    @torch.no_grad()
    def of_input(self, wav: torch.Tensor) -> dict[str, float]:
        """The non-intrusive scores (DNSMOS) of one signal (c, t) alone."""
        return {} if self.dnsmos is None else self.dnsmos(wav, self.rate)

    def _stoi(self, est: torch.Tensor, ref: torch.Tensor) -> float:
        """NaN where STOI is undefined (under ~0.4 s of sound once silence is removed)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pystoi warns and returns 1e-5 for short input
            try:
                value = float(self.stoi(ref.numpy(), est.numpy(), self.rate))
            except (ValueError, IndexError):
                return math.nan
        return math.nan if value == 1e-5 else value

    def _pesq(self, est: torch.Tensor, ref: torch.Tensor) -> float:
        rate = self.rate if self.rate in (8000, 16000) else 16000
        if rate != self.rate:
            est = resample(est[None], self.rate, rate)[0]
            ref = resample(ref[None], self.rate, rate)[0]
        mode = "wb" if rate == 16000 else "nb"
        try:
            return float(self.pesq(rate, ref.numpy(), est.numpy(), mode))
        except Exception:  # the pesq package raises its own types for silent or short input
            return math.nan


def _optional_metrics(wanted: set[str]):
    """(pesq function, stoi function, DNSMOS scorer, each None when not wanted or not
    installed; the names of the metrics skipped and why)."""
    from codec.dnsmos import DNSMOS, DNSMOSUnavailable

    skipped = {name: "not asked for (--metrics)" for name in OPTIONAL_METRICS if name not in wanted}
    pesq = stoi = dnsmos = None
    if "pesq" in wanted:
        try:
            from pesq import pesq
        except ImportError:
            skipped["pesq"] = "the pesq package is not installed (pip install pesq)"
    if "stoi" in wanted:
        try:
            from pystoi import stoi
        except ImportError:
            skipped["stoi"] = "the pystoi package is not installed (pip install pystoi)"
    if "dnsmos" in wanted:
        try:
            dnsmos = DNSMOS()
        except DNSMOSUnavailable as err:
            skipped["dnsmos"] = str(err)
    return pesq, stoi, dnsmos, skipped


@dataclass
class Evaluation:
    """What `evaluate` found: rows (one per file, codec and bandwidth), code statistics per
    bandwidth, problems (files skipped) and metrics that could not be computed."""

    rows: list[dict] = field(default_factory=list)
    clips: list = field(default_factory=list)  # codec.listening.ListeningClip, for index.html
    code_stats: dict[float, dict] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    skipped_metrics: dict[str, str] = field(default_factory=dict)
    files: int = 0

    def summary(self) -> list[dict]:
        """Means per (codec, bandwidth), in the order first seen. `bands_db` is the mean error
        per band (BAND_EDGES_HZ) and `band_db` the signed error of its worst band (not a mean
        of each file's worst). The input's own scores are the codec "input" (kbps None)."""
        groups: dict[tuple, list[dict]] = {}
        for row in self.rows:
            groups.setdefault((row["codec"], row["target_kbps"]), []).append(row)
        out = []
        for (codec, kbps), rows in groups.items():
            mean = {"codec": codec, "target_kbps": kbps, "files": len(rows)}
            for key in ("file_kbps", *METRICS):
                values = [r[key] for r in rows if key in r and math.isfinite(r[key])]
                if values:
                    mean[key] = sum(values) / len(values)
            bands = [r["bands_db"] for r in rows if "bands_db" in r]
            if bands:
                per_band = torch.tensor(bands, dtype=torch.float64).nanmean(0)
                mean["bands_db"] = [round(float(v), 3) for v in per_band]  # NaN above Nyquist
                worst = worst_band(per_band)
                if math.isfinite(worst):
                    mean["band_db"] = worst
            if codec == "codec":
                mean["levels"] = rows[0]["levels"]
                stats = self.code_stats.get(kbps)
                if stats:
                    mean["entropy_kbps"] = stats["entropy_kbps"]
            out.append(mean)
        return out

    def opus_equivalent(self, means: list[dict] | None = None) -> dict[str, dict[str, dict]]:
        """Per bandwidth of ours and metric: the Opus rate that scores as ours does, as
        {"kbps", "bound"} (codec.equivalent_rate); {} when Opus was not compared."""
        means = self.summary() if means is None else means
        opus = [m for m in means if m["codec"] == "opus"]
        out = {}
        for ours in (m for m in means if m["codec"] == "codec"):
            rates = {}
            for metric in METRICS:
                if metric == "band_db" or metric not in ours:
                    continue  # a band error is not better or worse with rate
                curve = [(m["target_kbps"], m[metric]) for m in opus if metric in m]
                rate = equivalent_rate(ours[metric], curve, metric in HIGHER_IS_BETTER)
                if rate is not None:
                    rates[metric] = rate.as_dict()
            if rates:
                out[f"{ours['target_kbps']:g}"] = rates
        return out


def evaluate(
    model: Codec,
    paths: list[Path],
    bandwidths: list[float],
    compare_opus: bool = False,
    spectrogram_dir: Path | None = None,
    spectrograms: int = 3,
    progress=None,
    opus_kbps: tuple[float, ...] = OPUS_LADDER,
    optional_metrics=OPTIONAL_METRICS,
    listening=None,
) -> Evaluation:
    """Run every file through the model at every bandwidth (and through Opus at each rate of
    `opus_kbps` when asked). `listening` (codec.listening.ListeningLimits): keep the audio of
    that many clips for index.html."""
    if compare_opus:
        opus_tools()
    opus_rates = sorted(set(opus_kbps)) if compare_opus else []
    windowing = Windowing.for_model(model)
    quality = Quality(model.sample_rate, optional_metrics)
    result = Evaluation(skipped_metrics=dict(quality.skipped), files=len(paths))
    levels_for = {kbps: model.levels_for(kbps, None) for kbps in bandwidths}
    codes_by_kbps: dict[float, list[torch.Tensor]] = {kbps: [] for kbps in bandwidths}
    rate = model.sample_rate
    with tempfile.TemporaryDirectory(prefix="codec-eval-") as tmp:
        workdir = Path(tmp)
        for index, path in enumerate(progress(paths) if progress else paths):
            try:
                reference = read_for(path, model.sample_rate, model.channels)
                rows, codes, decoded = _evaluate_file(
                    model, path, reference, levels_for, opus_rates, quality, windowing, workdir
                )
            except AudioError as err:  # names the file already
                result.problems.append(str(err))
                continue
            except (ValueError, OpusFailed) as err:
                result.problems.append(f"{path}: {err}")
                continue
            result.rows.extend(rows)
            if listening is not None and len(result.clips) < listening.clips:
                from codec.listening import keep_clip

                result.clips.append(keep_clip(path, reference, decoded, rate, listening))
            for kbps, c in codes.items():
                codes_by_kbps[kbps].append(c)
            if spectrogram_dir is not None and index < spectrograms:
                from codec.report import spectrogram_figure

                name = f"{index:02d}_{Path(path).stem}.png"
                spectrogram_figure(spectrogram_dir / name, reference, decoded, rate)
    for kbps, all_codes in codes_by_kbps.items():
        if all_codes:
            stacked = torch.cat(all_codes, -1)  # (g, levels, frames of every file)
            stats = code_statistics(stacked[None], model.codebook_size)
            bits = sum(stats["entropy_bits"]) * model.groups
            stats["entropy_kbps"] = bits * model.frame_rate / 1000
            result.code_stats[kbps] = stats
    return result


def _evaluate_file(model, path, reference, levels_for, opus_rates, quality, windowing, workdir):
    """One file at every bandwidth -> (rows, codes by kbps, decoded signals by (codec, kbps))."""
    rate = model.sample_rate
    seconds = reference.shape[-1] / rate
    (clip,) = quality_by_level(model, [reference], levels_for.values(), quality, windowing)
    rows, codes_by_kbps, decoded_by = [], {}, {}
    own = quality.of_input(reference)
    if own:
        rows.append({"file": str(path), "codec": INPUT, "target_kbps": None} | own)
    for kbps, levels in levels_for.items():
        codes = clip.codes[:, :levels].contiguous()
        codes_by_kbps[kbps] = codes
        stored = encode_codes_bytes(codes, codes_header(model, clip.prepared, codes, windowing))
        row = {"file": str(path), "codec": "codec", "target_kbps": kbps, "levels": levels}
        row["file_kbps"] = len(stored) * 8 / seconds / 1000
        rows.append(row | clip.scores[levels])
        decoded_by[("codec", kbps)] = clip.decoded[levels]
    for kbps in opus_rates:
        opus, opus_kbps = opus_roundtrip(reference, rate, kbps, workdir)
        row = {"file": str(path), "codec": "opus", "target_kbps": kbps, "file_kbps": opus_kbps}
        rows.append(row | quality(opus, reference))
        decoded_by[("opus", kbps)] = opus
    return rows, codes_by_kbps, decoded_by


def write_report(result: Evaluation, out: Path, model: Codec, listening=None) -> list[Path]:
    """results.csv, summary.json, report.md and rate_distortion.png in `out`; with `listening`
    (codec.listening.ListeningLimits) also index.html, its audio and listening/clips.json."""
    from codec.fileio import atomic_write_bytes
    from codec.report import markdown_table, rate_distortion_plot

    out.mkdir(parents=True, exist_ok=True)
    means = result.summary()
    columns = ["file", "codec", "target_kbps", "levels", "file_kbps", *METRICS]
    table = io.StringIO()
    writer = csv.DictWriter(table, columns, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    written = [atomic_write_bytes(out / "results.csv", table.getvalue().encode())]
    summary = {
        "model": {
            "id": model.config.model_id,
            "weights_hash": model.model_hash,
            "sample_rate": model.sample_rate,
        },
        "files": result.files,
        "files_failed": len(result.problems),
        "problems": result.problems,
        "skipped_metrics": result.skipped_metrics,
        "means": means,
        "band_edges_hz": [round(edge, 1) for edge in BAND_EDGES_HZ],
        "opus_equivalent_kbps": result.opus_equivalent(means),
        "code_statistics": {f"{k:g}": v for k, v in result.code_stats.items()},
    }
    written.append(atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode()))
    written.append(atomic_write_bytes(out / "report.md", markdown_table(result, means).encode()))
    if result.rows:
        written.append(rate_distortion_plot(out / "rate_distortion.png", means))
    if listening is not None:
        from codec.listening import write_listening_report

        written += write_listening_report(out, result.rows, result.clips, summary, listening)
    return written


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)
