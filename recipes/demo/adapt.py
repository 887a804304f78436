"""make demo's adaptation stage: the shipped speech16k model adapted to a voice it has not heard
(recipes/demo/voice: an Italian voice actor, 46 s to adapt on, 21 s held out), with the held-out
quality before and after at every bitrate.

    python recipes/demo/adapt.py RUN_DIR [KEY=VALUE ...]   (Hydra overrides, e.g. trainer.steps=40)

It is `codec eval` of the held-out clips with the shipped model, then `codec train
experiment=adapt init_from=speech16k data.root=recipes/demo/voice/train run_dir=RUN_DIR`
(configs/experiment/adapt.yaml), then `codec eval` of the same clips with RUN_DIR/model. Both
reports are kept in RUN_DIR/eval_before and RUN_DIR/eval_after. RUN_DIR must not hold a run
already (it would be resumed). DEMO_METRICS="pesq stoi" runs only those of the optional scores
(default: every one installed).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from codec.errors import first_line
from codec.evaluate import OPTIONAL_METRICS, evaluate, write_report
from codec.fileio import AUDIO_SUFFIXES
from codec.models import Codec
from codec.models.names import resolve_model
from codec.report import LABELS
from codec.train import Trainer, compose_config

VOICE = Path(__file__).resolve().parent / "voice"
SHIPPED = "speech16k"
BANDWIDTHS = (1.5, 3.0, 6.0, 12.0)
# shown when measured: (key, column title, format); mel and the worst band decide "improved"
COLUMNS = (
    ("mel", "{:.3f}"),
    ("si_sdr", "{:.2f}"),
    ("band_db", "{:+.1f}"),
    ("pesq", "{:.2f}"),
    ("stoi", "{:.3f}"),
    ("dnsmos_ovrl", "{:.2f}"),
)


@dataclass(frozen=True)
class Adaptation:
    """The held-out means per bitrate ({kbps: {metric: value}}) before and after."""

    before: dict[float, dict]
    after: dict[float, dict]
    steps: int
    clips: int

    @property
    def improved(self) -> bool:
        """Mel distance lower by more than 0.5% and the worst band's level error nearer 0 dB by
        more than 0.1 dB at every bitrate (smaller changes are float rounding: saving a model
        refolds its weight norm): the voice's spectrum and its balance learnt. SI-SDR, which
        asks for the phase, is shown beside them but does not decide."""
        return all(
            self.after[k]["mel"] < 0.995 * self.before[k]["mel"]
            and abs(self.after[k]["band_db"]) < abs(self.before[k]["band_db"]) - 0.1
            for k in self.before
        )

    def table(self) -> list[str]:
        first = next(iter(self.before.values()))
        shown = [(key, fmt) for key, fmt in COLUMNS if key in first]
        titles = [LABELS[key].split(" (")[0] for key, _ in shown]
        widths = [max(15, len(t)) for t in titles]
        lines = ["  kbps" + "".join(f"  {t:>{w}}" for t, w in zip(titles, widths))]
        for kbps in self.before:
            cells = []
            for (key, fmt), width in zip(shown, widths):
                a, b = self.before[kbps].get(key, math.nan), self.after[kbps].get(key, math.nan)
                cells.append(f"  {fmt.format(a) + ' -> ' + fmt.format(b):>{width}}")
            lines.append(f"  {kbps:>4g}" + "".join(cells))
        return lines

    def describe(self) -> str:
        verdict = "improved" if self.improved else "did NOT improve"
        return (
            f"held-out quality of {self.clips} clips, the shipped model -> adapted for "
            f"{self.steps} steps: {verdict} (mel distance lower and the worst band nearer 0 dB "
            "at every bitrate)"
        )


def held_out_means(model: Codec, clips, out: Path, metrics, bandwidths) -> dict[float, dict]:
    result = evaluate(model, clips, list(bandwidths), spectrograms=0, optional_metrics=metrics)
    if result.problems:
        raise ValueError(result.problems[0])
    write_report(result, out, model)
    return {m["target_kbps"]: m for m in result.summary() if m["codec"] == "codec"}


def adapt(
    run_dir: Path,
    overrides=(),
    voice: Path = VOICE,
    metrics=OPTIONAL_METRICS,
    bandwidths=BANDWIDTHS,
) -> Adaptation:
    """Adapt the shipped model to `voice`/train in the new folder `run_dir`; score it on
    `voice`/heldout before and after at `bandwidths` with the optional `metrics` installed."""
    run_dir = Path(run_dir)
    if (run_dir / "config.yaml").exists():
        raise ValueError(f"{run_dir}: holds a training run already; remove it or choose another")
    clips = sorted(p for p in (voice / "heldout").iterdir() if p.suffix in AUDIO_SUFFIXES)
    cfg = compose_config(  # bad overrides fail here, before anything runs
        [
            "experiment=adapt",
            f"init_from={SHIPPED}",
            f"data.root={voice / 'train'}",
            f"run_dir={run_dir}",
            *overrides,
        ]
    )
    shipped = Codec.from_pretrained(resolve_model(SHIPPED))
    before = held_out_means(shipped, clips, run_dir / "eval_before", metrics, bandwidths)
    trainer = Trainer(cfg)
    trainer.run()
    adapted = Codec.from_pretrained(run_dir / "model")
    after = held_out_means(adapted, clips, run_dir / "eval_after", metrics, bandwidths)
    return Adaptation(before, after, trainer.step, len(clips))


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    run_dir, overrides = Path(argv[0]), argv[1:]
    metrics = os.environ.get("DEMO_METRICS")  # e.g. "stoi": the optional scores to run
    try:
        result = adapt(run_dir, overrides, metrics=metrics.split() if metrics else OPTIONAL_METRICS)
    except (ValueError, HydraException, OmegaConfBaseException) as err:  # a bad override
        sys.exit(f"demo adapt: {first_line(err)}")
    print("\n".join(result.table()))
    print(result.describe())


if __name__ == "__main__":
    main(sys.argv[1:])
