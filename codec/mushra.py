"""A blind MUSHRA listening test (ITU-R BS.1534) from a `codec eval` report, and its results.

    REPORT/listening/clips.json (codec.listening) -> per clip a trial: the reference, the hidden
        reference, a 3.5 kHz low-pass anchor, a 7 kHz low-pass anchor and each (codec, kbps)
    -> one HTML file with every stimulus inside it (FLAC, base64): it opens from file://, plays
       with the Web Audio API (looped, switching at the same position with a 10 ms crossfade),
       shuffles trials and conditions per listener, and offers the ratings as a JSON download
       at the end. Nothing is sent anywhere (the page's Content-Security-Policy allows no
       connection at all).
    listeners' JSON files -> post-screening (a listener who rates the hidden reference below 90
       in more than 15% of trials is excluded) -> mean and 95% confidence interval (Student t)
       per condition and bitrate over every kept rating

The audio is embedded rather than linked because a page opened from file:// may not read other
files as bytes (Chromium refuses fetch and XHR there), and Web Audio needs the bytes.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF

from codec.audio import AudioError, read_audio
from codec.errors import first_line
from codec.fileio import atomic_write_bytes, read_regular_file
from codec.listening import MANIFEST, MANIFEST_FORMAT, kbps_text
from codec.web import asset, render, script_json

TEST_FORMAT = "codec-mushra-test"
RATINGS_FORMAT = "codec-mushra-ratings"
ANCHORS = (("anchor70", "anchor 7 kHz", 7000), ("anchor35", "anchor 3.5 kHz", 3500))
REFERENCE = "reference"
SCREEN_BELOW = 90  # BS.1534 post-screening: the hidden reference rated below this ...
SCREEN_FRACTION = 0.15  # ... in more than this fraction of a listener's trials excludes them
MAX_RATINGS_BYTES = 16 * 2**20


class MushraError(ValueError):
    """A report or a ratings file that cannot be used; the message starts with the file."""


# --- the test page -------------------------------------------------------------------------


def lowpass(wav: torch.Tensor, rate: int, cutoff: float) -> torch.Tensor:
    """wav (c, t) low-passed at `cutoff` Hz by a Kaiser-windowed sinc (resampling to 2 * cutoff
    and back, torchaudio's steepest setting); a copy when the cutoff is at or above Nyquist."""
    low = int(round(2 * cutoff))
    if low >= rate:
        return wav.clone()
    steep = dict(
        lowpass_filter_width=64, rolloff=0.99, resampling_method="sinc_interp_kaiser", beta=14.77
    )
    down = AF.resample(wav, rate, low, **steep)
    return AF.resample(down, low, rate, **steep)[..., : wav.shape[-1]]


def condition_id(codec: str, kbps: float) -> str:
    return f"{codec}@{kbps_text(kbps)}"


def parse_condition(text: str) -> tuple[str, float]:
    """'opus:6' -> ('opus', 6.0); the form --conditions takes."""
    name, sep, kbps = text.rpartition(":")
    try:
        value = float(kbps)
    except ValueError:
        value = math.nan
    if not sep or not name or not math.isfinite(value):
        raise ValueError(f"{text}: not CODEC:KBPS (e.g. codec:6 or opus:8)")
    return name, value


def read_manifest(report: Path) -> dict:
    """The listening report's manifest (REPORT/listening/clips.json), checked."""
    path = report / MANIFEST
    try:
        manifest = json.loads(read_regular_file(path, MAX_RATINGS_BYTES, MushraError))
    except FileNotFoundError:
        raise MushraError(
            f"{path}: not found; `codec eval ... -o {report}` writes it (with --listen-clips > 0)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MushraError(
            f"{path}: cannot read ({getattr(err, 'strerror', None) or err})"
        ) from None
    except MushraError as err:
        raise MushraError(f"{path}: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise MushraError(f"{path}: not a listening report manifest of `codec eval`")
    if not manifest.get("clips"):
        raise MushraError(f"{path}: no clips (run `codec eval` with --listen-clips 1 or more)")
    try:
        for clip in manifest["clips"]:
            str(clip["file"]), str(clip["original"]["audio"])
            for entry in clip["decoded"]:
                str(entry["codec"]), float(entry["target_kbps"]), str(entry["audio"])
    except (KeyError, TypeError, ValueError) as err:
        raise MushraError(f"{path}: a clip lacks its file, audio or bitrate ({err!r})") from None
    return manifest


def _report_file(report: Path, relative) -> Path:
    """REPORT/relative, refusing a path that leaves the report folder."""
    if (
        not isinstance(relative, str)
        or Path(relative).is_absolute()
        or ".." in Path(relative).parts
    ):
        raise MushraError(f"{report / MANIFEST}: {relative!r} is not a path inside the report")
    return report / relative


def _flac_bytes(wav: torch.Tensor, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wav.clamp(-1, 1).T.numpy(), rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def build_test(
    report: Path,
    conditions: list[tuple[str, float]] | None = None,
    trials: int | None = None,
    title: str | None = None,
) -> dict:
    """The test from a `codec eval` report folder: {"format", "version", "test_id", "title",
    "model", "conditions": [{"id", "name", "kind", "kbps"}], "trials": [{"id", "file",
    "reference", "stimuli": {condition id: audio id}, "seconds", "samples", "sample_rate"}],
    "audio": {audio id: FLAC bytes}, "notes": [...]}. `conditions`: the (codec, kbps) pairs to
    test (default: all in the report); `trials`: at most that many clips."""
    manifest = read_manifest(report)
    clips = manifest["clips"][: trials or None]
    available = [(d["codec"], float(d["target_kbps"])) for d in clips[0]["decoded"]]
    chosen = available if conditions is None else [(c, float(k)) for c, k in conditions]
    missing = [c for c in chosen if c not in available]
    if missing:
        have = ", ".join(f"{c}:{kbps_text(k)}" for c, k in available)
        wanted = ", ".join(f"{c}:{kbps_text(k)}" for c, k in missing)
        raise MushraError(f"{report}: no {wanted} in this report (it has {have})")
    test_conditions = [{"id": REFERENCE, "name": "reference", "kind": "reference", "kbps": None}]
    test_conditions += [
        {"id": cid, "name": name, "kind": "anchor", "kbps": None} for cid, name, _ in ANCHORS
    ]
    test_conditions += [
        {"id": condition_id(c, k), "name": c, "kind": "test", "kbps": k} for c, k in chosen
    ]
    audio: dict[str, bytes] = {}
    test_trials, notes = [], []
    for index, clip in enumerate(clips):
        reference, rate = _read(report, clip["original"]["audio"])
        by_pair = {(d["codec"], float(d["target_kbps"])): d for d in clip["decoded"]}
        stimuli = {REFERENCE: f"t{index}-ref"}
        audio[stimuli[REFERENCE]] = _flac_bytes(reference, rate)
        for cid, name, cutoff in ANCHORS:
            if 2 * cutoff >= rate and index == 0:
                nothing = f"{rate} Hz audio has nothing above {cutoff / 1000:g} kHz"
                notes.append(f"the {name} equals the reference: {nothing}")
            stimuli[cid] = f"t{index}-{cid}"
            audio[stimuli[cid]] = _flac_bytes(lowpass(reference, rate, cutoff), rate)
        for pair in chosen:
            if pair not in by_pair:
                raise MushraError(f"{report / MANIFEST}: clip {clip['file']} lacks {pair}")
            wav, wav_rate = _read(report, by_pair[pair]["audio"])
            if wav_rate != rate or wav.shape[0] != reference.shape[0]:
                raise MushraError(f"{by_pair[pair]['audio']}: not at the reference's rate/channels")
            wav = torch.nn.functional.pad(wav, (0, max(0, reference.shape[-1] - wav.shape[-1])))
            stimuli[condition_id(*pair)] = f"t{index}-c{len(stimuli)}"
            audio[stimuli[condition_id(*pair)]] = _flac_bytes(wav[:, : reference.shape[-1]], rate)
        test_trials.append(
            {
                "id": f"t{index}",
                "file": str(clip["file"]),
                "reference": stimuli[REFERENCE],
                "stimuli": stimuli,
                "seconds": reference.shape[-1] / rate,
                "samples": reference.shape[-1],
                "sample_rate": rate,
            }
        )
    model = manifest.get("model", {})
    identity = json.dumps(
        [model, [c["id"] for c in test_conditions], [t["file"] for t in test_trials]],
        sort_keys=True,
    )
    return {
        "format": TEST_FORMAT,
        "version": 1,
        "test_id": hashlib.sha256(identity.encode()).hexdigest()[:16],
        "title": title or f"Listening test: {model.get('id', 'codec')}",
        "model": model,
        "conditions": test_conditions,
        "trials": test_trials,
        "audio": audio,
        "notes": notes,
    }


def _read(report: Path, relative) -> tuple[torch.Tensor, int]:
    path = _report_file(report, relative)
    try:
        return read_audio(path)
    except AudioError as err:
        raise MushraError(str(err)) from None


def render_test_page(test: dict) -> str:
    """The whole test as one HTML file."""
    data = {k: v for k, v in test.items() if k != "audio"}
    audio = {key: base64.b64encode(value).decode() for key, value in test["audio"].items()}
    return render(
        "mushra.html",
        title=html.escape(test["title"]),
        count=len(test["trials"]),
        data=script_json(data),
        audio=script_json(audio),
        style=asset("mushra.css"),
        script=asset("mushra.js"),
    )


def write_test_page(path: Path, test: dict) -> Path:
    return atomic_write_bytes(path, render_test_page(test).encode())


# --- the listeners' ratings ----------------------------------------------------------------


@dataclass
class Session:
    """One listener's ratings file."""

    path: str
    listener: str
    session: str
    test_id: str
    conditions: dict[str, dict]  # id -> {"name", "kind", "kbps"}
    trials: list[dict]  # {"trial", "file", "ratings": {condition id: 0..100}}

    def reference_below(self) -> int:
        """Trials in which the hidden reference was rated below SCREEN_BELOW."""
        ref = next(c for c, v in self.conditions.items() if v["kind"] == "reference")
        return sum(1 for t in self.trials if t["ratings"][ref] < SCREEN_BELOW)

    @property
    def excluded(self) -> bool:
        return self.reference_below() > SCREEN_FRACTION * len(self.trials)


def read_ratings(path) -> Session:
    """A listener's ratings JSON, checked whole; MushraError "PATH: problem" if it is not one."""
    try:
        data = json.loads(read_regular_file(path, MAX_RATINGS_BYTES, MushraError))
    except OSError as err:
        raise MushraError(f"{path}: cannot read ({err.strerror or err})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MushraError(f"{path}: not JSON ({first_line(err)})") from None
    except MushraError as err:
        raise MushraError(f"{path}: {err}") from None
    try:
        return _session(path, data)
    except MushraError:
        raise
    except KeyError as err:
        raise MushraError(f"{path}: not a complete MUSHRA ratings file (no {err})") from None
    except (TypeError, AttributeError, ValueError) as err:
        raise MushraError(f"{path}: not a complete MUSHRA ratings file ({err})") from None


def _session(path, data) -> Session:
    if not isinstance(data, dict) or data.get("format") != RATINGS_FORMAT:
        raise MushraError(
            f"{path}: not a ratings file of `codec mushra` (no format {RATINGS_FORMAT})"
        )
    if data.get("version") != 1:
        raise MushraError(f"{path}: ratings format version {data.get('version')!r}, expected 1")
    conditions = data["conditions"]
    if not isinstance(conditions, dict) or not conditions:
        raise ValueError("no conditions")
    for cid, c in conditions.items():
        if c["kind"] not in ("reference", "anchor", "test") or not isinstance(c["name"], str):
            raise ValueError(f"condition {cid!r} is malformed")
        if c["kbps"] is not None and not _finite(c["kbps"]):
            raise ValueError(f"condition {cid!r} has a bitrate that is not a number")
    if sum(c["kind"] == "reference" for c in conditions.values()) != 1:
        raise ValueError("not exactly one hidden reference")
    trials, seen = data["trials"], set()
    if not isinstance(trials, list) or not trials:
        raise ValueError("no trials")
    for trial in trials:
        if trial["trial"] in seen:
            raise ValueError(f"trial {trial['trial']!r} twice")
        seen.add(trial["trial"])
        ratings = trial["ratings"]
        if set(ratings) != set(conditions):
            raise ValueError(f"trial {trial['trial']!r} does not rate every condition once")
        for cid, value in ratings.items():
            if not _finite(value) or not 0 <= value <= 100:
                raise ValueError(f"trial {trial['trial']!r}: rating {value!r} of {cid!r}")
    for key in ("test_id", "session", "listener"):
        if not isinstance(data[key], str):
            raise ValueError(f"{key} is not text")
    return Session(
        path=str(path),
        listener=data["listener"] or Path(path).stem,
        session=data["session"],
        test_id=data["test_id"],
        conditions=conditions,
        trials=trials,
    )


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_sessions(paths) -> tuple[list[Session], list[str]]:
    """Every file read and checked, together: (sessions, problems in the order of `paths`).
    Files from another test than the first good one, or a session given twice, are problems."""
    sessions, problems = [], {}
    for index, path in enumerate(paths):
        try:
            sessions.append((index, read_ratings(path)))
        except MushraError as err:
            problems[index] = str(err)
    if sessions:
        first, seen = sessions[0][1], {}
        for index, s in sessions:
            if s.test_id != first.test_id:
                other = f"{s.test_id}; {first.path} is {first.test_id}"
                problems[index] = f"{s.path}: ratings of another test ({other})"
            elif s.conditions != first.conditions:
                problems[index] = f"{s.path}: its conditions differ from those of {first.path}"
            elif s.session in seen:
                problems[index] = f"{s.path}: the same session as {seen[s.session]}"
            seen.setdefault(s.session, s.path)
    return [s for _, s in sessions], [problems[i] for i in sorted(problems)]


@dataclass
class ConditionResult:
    name: str
    kind: str
    kbps: float | None
    ratings: int
    mean: float
    ci95: float  # half-width of the 95% confidence interval; NaN for one rating


def aggregate(sessions: list[Session]) -> list[ConditionResult]:
    """Mean and 95% confidence interval (Student t over every rating of the kept listeners)
    per condition, in the order reference, anchors, then the tested codecs by name and kbps."""
    kept = [s for s in sessions if not s.excluded]
    if not kept:
        return []
    conditions = kept[0].conditions
    out = []
    order = {"reference": 0, "anchor": 1, "test": 2}
    for cid, c in sorted(
        conditions.items(),
        key=lambda item: (order[item[1]["kind"]], item[1]["name"], item[1]["kbps"] or 0),
    ):
        values = [float(t["ratings"][cid]) for s in kept for t in s.trials]
        n = len(values)
        mean = sum(values) / n
        if n > 1:
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
            ci = student_t_quantile(0.975, n - 1) * sd / math.sqrt(n)
        else:
            ci = math.nan
        out.append(ConditionResult(c["name"], c["kind"], c["kbps"], n, mean, ci))
    return out


def student_t_quantile(p: float, df: int) -> float:
    """The p-quantile (0.5 < p < 1) of Student's t with `df` degrees of freedom, by bisection
    on its CDF (Simpson's rule on the density); within 1e-6 of tabulated values."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(x: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))

    def cdf(t: float, steps: int = 2000) -> float:
        h = t / steps
        total = density(0) + density(t)
        total += sum((4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
        return 0.5 + total * h / 3

    low, high = 0.0, 1.0
    while cdf(high) < p:
        low, high = high, 2 * high
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) < p else (low, mid)
    return (low + high) / 2


def condition_label(c: ConditionResult) -> str:
    if c.kind == "reference":
        return "hidden reference"
    return c.name if c.kbps is None else f"{c.name} {kbps_text(c.kbps)} kbps"


def results_markdown(sessions: list[Session], results: list[ConditionResult]) -> str:
    """The table of means with their 95% intervals and the post-screening of every listener."""
    lines = []
    if results:
        lines += [
            "| condition | kbps | ratings | mean | 95% CI |",
            "|---|---|---|---|---|",
        ]
        for r in results:
            kbps = "-" if r.kbps is None else kbps_text(r.kbps)
            ci = "-" if math.isnan(r.ci95) else f"{r.mean - r.ci95:.1f} to {r.mean + r.ci95:.1f}"
            name = condition_label(r) if r.kbps is None else r.name
            lines.append(f"| {name} | {kbps} | {r.ratings} | {r.mean:.1f} | {ci} |")
        lines.append("")
    kept = [s for s in sessions if not s.excluded]
    lines.append(
        f"Listeners: {len(sessions)}, kept: {len(kept)}, excluded: {len(sessions) - len(kept)} "
        f"(ITU-R BS.1534 post-screening: a listener who rates the hidden reference below "
        f"{SCREEN_BELOW} in more than {SCREEN_FRACTION:.0%} of trials is excluded)."
    )
    for s in sessions:
        below = s.reference_below()
        verdict = "excluded" if s.excluded else "kept"
        lines.append(
            f"- {s.listener} ({s.path}): hidden reference below {SCREEN_BELOW} in {below} of "
            f"{len(s.trials)} trials: {verdict}"
        )
    return "\n".join(lines) + "\n"


def results_json(sessions: list[Session], results: list[ConditionResult]) -> dict:
    return {
        "test_id": sessions[0].test_id if sessions else None,
        "post_screening": {
            "rule": f"hidden reference below {SCREEN_BELOW} in more than "
            f"{SCREEN_FRACTION:.0%} of trials",
            "listeners": [
                {
                    "listener": s.listener,
                    "file": s.path,
                    "trials": len(s.trials),
                    "reference_below": s.reference_below(),
                    "excluded": s.excluded,
                }
                for s in sessions
            ],
        },
        "conditions": [
            {
                "condition": r.name,
                "kind": r.kind,
                "kbps": r.kbps,
                "ratings": r.ratings,
                "mean": r.mean,
                "ci95": None if math.isnan(r.ci95) else r.ci95,
                "ci95_low": None if math.isnan(r.ci95) else r.mean - r.ci95,
                "ci95_high": None if math.isnan(r.ci95) else r.mean + r.ci95,
            }
            for r in results
        ],
    }


def write_results(out: Path, sessions: list[Session], results: list[ConditionResult]):
    """mushra.md and mushra.json in `out` (and mushra.png where matplotlib is installed)."""
    written = [
        atomic_write_bytes(out / "mushra.md", results_markdown(sessions, results).encode()),
        atomic_write_bytes(
            out / "mushra.json", json.dumps(results_json(sessions, results), indent=2).encode()
        ),
    ]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return written
    if results:
        from codec.report import mushra_plot

        points = [(condition_label(r), r.kind, r.mean, r.ci95) for r in results]
        written.append(mushra_plot(out / "mushra.png", points))
    return written
