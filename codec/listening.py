"""The listening report: `index.html` in a `codec eval -o` folder, to hear what the table says.

    evaluate() keeps the first N clips (cut to S seconds): original + every (codec, kbps) decoding
    -> listening/CC/NN_name.flac (lossless, 16-bit) and listening/CC/NN_name.png (spectrogram)
    -> listening/clips.json (the manifest `codec mushra page` builds its test from)
    -> index.html: the table of means and the rate-distortion plot on top, then per clip a
       player, a spectrogram and the scores for each signal

Codecs and rates are (codec name, target kbps) pairs and metrics are whatever keys the rows
carry, so a new comparison codec or score appears without changes here. The page uses relative
paths only and no script or style from elsewhere: it opens from file:// with no server. Every
text from outside (file names, codec names, model ids) is escaped.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from codec.audio import write_audio
from codec.fileio import atomic_write_bytes
from codec.web import asset, render

MANIFEST = "listening/clips.json"
MANIFEST_FORMAT = "codec-listening-report"
INPUT = "input"  # codec.evaluate's rows that score the input itself
# Keys of a row or a mean that are not scores.
NOT_SCORES = {"file", "codec", "target_kbps", "levels", "files"}


@dataclass
class ListeningLimits:
    """At most `clips` files are rendered into index.html, each cut to its first `seconds`
    (scores stay those of the whole file); the rest are in results.csv only."""

    clips: int = 6
    seconds: float = 10.0


@dataclass
class ListeningClip:
    """One clip as kept for the page: its path, the reference and every decoding, each (c, t)
    at `rate` and cut to the limit; `seconds` is the whole file's duration."""

    path: str
    rate: int
    seconds: float
    reference: torch.Tensor
    decoded: dict[tuple[str, float], torch.Tensor] = field(default_factory=dict)


def keep_clip(path, reference, decoded: dict, rate: int, limits: ListeningLimits) -> ListeningClip:
    """A ListeningClip of `reference` (c, t) and its `decoded` {(codec, kbps): (c, t)}, cut to
    the first `limits.seconds`."""
    keep = max(1, int(round(limits.seconds * rate)))
    return ListeningClip(
        path=str(path),
        rate=rate,
        seconds=reference.shape[-1] / rate,
        reference=reference[..., :keep].clone(),
        decoded={key: wav[..., :keep].clone() for key, wav in decoded.items()},
    )


def score_keys(rows: list[dict]) -> list[str]:
    """The numeric keys of rows that are scores: rates (`*_kbps`) first, then the known ones
    (codec.report.LABELS) in their order, then any others in the order first seen."""
    from codec.report import LABELS

    seen: list[str] = []
    for row in rows:
        for key, value in row.items():
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if key not in NOT_SCORES and is_number and key not in seen:
                seen.append(key)
    rates = [k for k in seen if k.endswith("_kbps")]
    known = [k for k in LABELS if k in seen and k not in rates]
    return rates + known + [k for k in seen if k not in known and k not in rates]


def label(key: str) -> tuple[str, str]:
    """(short name, hint) of a score key: 'mel distance', 'lower is better'."""
    from codec.report import LABELS

    text = LABELS.get(key, key.replace("_", " "))
    name, _, hint = text.partition(" (")
    return name, hint.rstrip(")")


def slug(text: str) -> str:
    """A file-name-safe form of a codec name: lower case letters, digits, '-' and '_'."""
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-") or "codec"


def kbps_text(kbps: float) -> str:
    return f"{kbps:g}"


def _number(key: str, value) -> str:
    """A score as codec.report formats it (kbps to 2 decimals); "–" for none or NaN."""
    from codec.report import FORMATS

    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    return ("{:.2f}" if key.endswith("_kbps") else FORMATS.get(key, "{:.3f}")).format(value)


def _kbps(kbps) -> str:
    return "–" if kbps is None else kbps_text(kbps)


def write_listening_report(
    out: Path, rows: list[dict], clips: list[ListeningClip], summary: dict, limits: ListeningLimits
) -> list[Path]:
    """Write the clips' audio and spectrograms, listening/clips.json and index.html into `out`
    (a `codec eval` report folder); `summary` is its summary.json (model, files, files_failed,
    means, opus_equivalent_kbps). Returns the paths written (audio and images not listed)."""
    from codec.report import spectrogram_db_range, spectrogram_strip

    keys = score_keys(rows)
    manifest_clips = []
    for index, clip in enumerate(clips):
        folder = Path("listening") / f"{index:02d}"
        db_range = spectrogram_db_range(clip.reference, clip.rate)
        signals = [("original", None, clip.reference)]
        signals += [(codec, kbps, wav) for (codec, kbps), wav in _grouped(clip.decoded)]
        entries = []
        for number, (codec, kbps, wav) in enumerate(signals):
            name = "original" if kbps is None else f"{slug(codec)}_{kbps_text(kbps)}kbps"
            audio, image = (folder / f"{number:02d}_{name}.{ext}" for ext in ("flac", "png"))
            write_audio(out / audio, wav, clip.rate)
            spectrogram_strip(out / image, wav, clip.rate, db_range)
            # the original's own scores are the input row's (DNSMOS of the recording)
            row = _row_for(rows, clip.path, INPUT if kbps is None else codec, kbps)
            scores = {k: row[k] for k in keys if k in row}
            entries.append(
                {
                    "codec": codec,
                    "target_kbps": kbps,
                    "audio": audio.as_posix(),
                    "spectrogram": image.as_posix(),
                    "scores": scores,
                }
            )
        manifest_clips.append(
            {
                "file": clip.path,
                "sample_rate": clip.rate,
                "seconds": clip.seconds,
                "rendered_seconds": clip.reference.shape[-1] / clip.rate,
                "original": entries[0],
                "decoded": entries[1:],
            }
        )
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "model": summary["model"],
        "limits": {"clips": limits.clips, "seconds": limits.seconds},
        "clips": manifest_clips,
    }
    written = [atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=1).encode())]
    page = render_page(manifest, keys, summary, (out / "rate_distortion.png").exists())
    written.append(atomic_write_bytes(out / "index.html", page.encode()))
    return written


def _grouped(decoded: dict) -> list:
    """{(codec, kbps): wav} items by codec (in the order first seen), then by kbps."""
    order = {codec: i for i, codec in reversed(list(enumerate(c for c, _ in decoded)))}
    return sorted(decoded.items(), key=lambda item: (order[item[0][0]], item[0][1]))


def _row_for(rows: list[dict], path: str, codec: str, kbps: float) -> dict:
    for row in rows:
        if row["file"] == path and row["codec"] == codec and row["target_kbps"] == kbps:
            return row
    return {}


def render_page(manifest: dict, keys: list[str], summary: dict, has_plot: bool) -> str:
    """index.html as text: every outside string goes through html.escape."""
    e = html.escape
    means = summary["means"]
    model = manifest["model"]
    limits = manifest["limits"]
    mean_keys = score_keys(means)
    head = "".join(f"<th title='{e(label(k)[1])}'>{e(label(k)[0])}</th>" for k in mean_keys)
    body = []
    for mean in means:
        name = mean["codec"] + (f" ({mean['levels']} levels)" if "levels" in mean else "")
        cells = "".join(f"<td>{_number(k, mean.get(k))}</td>" for k in mean_keys)
        body.append(
            f"<tr><td class='name'>{e(name)}</td><td>{_kbps(mean['target_kbps'])}</td>{cells}</tr>"
        )
    hints = ", ".join(f"{e(label(k)[0])}: {e(label(k)[1])}" for k in mean_keys if label(k)[1])
    plot = (
        "<figure><img src='rate_distortion.png' alt='rate-distortion plot'></figure>"
        if has_plot
        else ""
    )
    equivalent = _equivalent_table(summary.get("opus_equivalent_kbps") or {})
    names = short_names([clip["file"] for clip in manifest["clips"]])
    sections = [
        _clip_section(i, clip, name, keys)
        for i, (clip, name) in enumerate(zip(manifest["clips"], names))
    ]
    shown = len(manifest["clips"])
    files = summary.get("files", shown)
    limit_line = (
        f"{shown} of {files} file(s) rendered below (at most {limits['clips']}, each cut to its "
        f"first {limits['seconds']:g} s; scores are those of the whole file). Every file is in "
        "<a href='results.csv'>results.csv</a>."
    )
    return render(
        "listening.html",
        title=e(f"Listening report: {model.get('id', '')}"),
        model=e(str(model.get("id", ""))),
        hash=e(str(model.get("weights_hash", ""))),
        rate=e(str(model.get("sample_rate", ""))),
        files=files,
        failed=summary.get("files_failed", 0),
        head=head,
        body="\n".join(body),
        hints=hints,
        equivalent=equivalent,
        plot=plot,
        limit_line=limit_line,
        clips="\n".join(sections) or "<p>No clips rendered.</p>",
        style=asset("listening.css"),
        script=asset("listening.js"),
    )


def _equivalent_table(equivalent: dict[str, dict[str, dict]]) -> str:
    """summary.json's opus_equivalent_kbps (ours at kbps -> metric -> {"kbps", "bound"}) as an
    HTML table; "" when Opus was not compared."""
    from codec.equivalent_rate import EquivalentRate

    metrics = []
    for rates in equivalent.values():
        metrics += [m for m in rates if m not in metrics]
    if not metrics:
        return ""
    e = html.escape
    head = "".join(f"<th>{e(label(m)[0])}</th>" for m in metrics)
    body = []
    for kbps, rates in equivalent.items():
        cells = "".join(
            f"<td>{e(str(EquivalentRate(**rates[m])))}</td>" if m in rates else "<td>–</td>"
            for m in metrics
        )
        body.append(f"<tr><td class='name'>ours at {e(kbps)} kbps</td>{cells}</tr>")
    return (
        "<h2>Opus-equivalent bitrate</h2><p class='note'>The Opus rate (kbps) that scores as "
        "well as ours, by each score: &lt; before Opus's lowest rate compared when that one "
        "already does, &gt; before its highest when none does.</p>"
        f"<table><thead><tr><th>codec</th>{head}</tr></thead><tbody>{''.join(body)}"
        "</tbody></table>"
    )


def short_names(paths: list[str]) -> list[str]:
    """The paths without the folders they all share (the whole path stays in a tooltip)."""
    if len(paths) == 1:
        return [Path(paths[0]).name]
    try:
        common = os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:  # absolute and relative paths mixed
        return list(paths)
    return [os.path.relpath(p, common) if common else p for p in paths]


def _clip_section(index: int, clip: dict, name: str, keys: list[str]) -> str:
    e = html.escape
    cards = [_card(0, "original", "", clip["original"], keys)]
    for number, entry in enumerate(clip["decoded"], start=1):
        rate = f"{kbps_text(entry['target_kbps'])} kbps"
        cards.append(_card(number, entry["codec"], rate, entry, keys))
    cut = ""
    if clip["rendered_seconds"] < clip["seconds"] - 1e-6:
        cut = f", first {clip['rendered_seconds']:.1f} s played"
    return (
        f"<section class='clip' id='clip{index}'>"
        f"<h2><span class='index'>{index + 1}</span> "
        f"<span class='file' title='{e(clip['file'])}'>{e(name)}</span>"
        f"<span class='dur'>{clip['seconds']:.2f} s{cut}</span></h2>"
        f"<div class='cards'>{''.join(cards)}</div></section>"
    )


def _card(number: int, name: str, rate: str, entry: dict, keys: list[str]) -> str:
    e = html.escape
    scores = "".join(
        f"<span title='{e(label(k)[1])}'>{e(label(k)[0])} <b>{_number(k, entry['scores'][k])}</b>"
        "</span>"
        for k in keys
        if k in entry["scores"]
    )
    key_hint = f"<kbd>{number}</kbd>" if number < 10 else ""
    return (
        f"<div class='card{' ref' if number == 0 else ''}' data-n='{number}'>"
        f"<div class='head'>{key_hint}<span class='codec'>{e(name)}</span>"
        f"<span class='rate'>{e(rate)}</span></div>"
        f"<audio controls preload='auto' src='{e(entry['audio'])}'></audio>"
        f"<img class='spec' loading='lazy' src='{e(entry['spectrogram'])}' "
        f"alt='spectrogram of {e(name)} {e(rate)}'>"
        f"<div class='scores'>{scores}</div></div>"
    )
