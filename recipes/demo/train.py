"""make demo's training stage: a small frame-rate codec trained from scratch (configs/experiment/
demo.yaml) on the generated demo corpus plus the demo's speech clips, with the validation mel
distance measured before the first step and after the last.

    python recipes/demo/train.py RUN_DIR [KEY=VALUE ...]   (Hydra overrides, e.g. trainer.steps=50)

It is `codec train experiment=demo data=folder data.root=[RUN_DIR/corpus,recipes/demo/speech]
run_dir=RUN_DIR`, plus one validation at step 0. RUN_DIR must not hold a run already (a run
there would be resumed, and its start would not be the untrained model).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from codec.errors import first_line
from codec.train import Trainer, compose_config
from codec.train.data import make_demo_corpus

SPEECH = Path(__file__).resolve().parent / "speech"
CORPUS_CLIPS, CORPUS_SECONDS = 80, 2.0


@dataclass(frozen=True)
class Improvement:
    """The validation score (lower is better) of the untrained model and of the trained one."""

    metric: str
    start: float
    end: float
    steps: int
    clips: int

    @property
    def improved(self) -> bool:
        return self.end < self.start

    def describe(self) -> str:
        change = (self.end - self.start) / self.start * 100
        verdict = "improved" if self.improved else "did NOT improve"
        return (
            f"validation {self.metric} on {self.clips} held-out clips: {self.start:.3f} at step 0, "
            f"{self.end:.3f} at step {self.steps} ({change:+.0f}%): {verdict}"
        )


def demo_overrides(run_dir: Path, corpus: Path, extra=()) -> list[str]:
    return [
        "experiment=demo",
        "data=folder",
        f"data.root=[{corpus},{SPEECH}]",
        f"run_dir={run_dir}",
        *extra,
    ]


def train_demo(run_dir: Path, overrides=(), corpus: Path | None = None) -> Improvement:
    """Train the demo model in the new folder `run_dir` on `corpus` (default run_dir/corpus)
    and the demo's speech clips; the demo corpus is generated there when that folder is
    missing."""
    run_dir = Path(run_dir)
    if (run_dir / "config.yaml").exists():
        raise ValueError(f"{run_dir}: holds a training run already; remove it or choose another")
    corpus = run_dir / "corpus" if corpus is None else Path(corpus)
    cfg = compose_config(demo_overrides(run_dir, corpus, overrides))  # bad overrides fail here
    if not corpus.is_dir():
        make_demo_corpus(corpus, CORPUS_CLIPS, CORPUS_SECONDS, sample_rate=16000)
    trainer = Trainer(cfg)
    solver = trainer.solver
    metric = solver.best_metric  # the mel distance with every level, as the trainer picks best
    start = solver.validate(0, None)[metric]
    trainer.run()
    end = last_validation(run_dir / "metrics.jsonl")[metric]
    clips = min(len(solver.valid_records), trainer.loop.trainer.valid_items)
    return Improvement(metric.removeprefix("valid_"), start, end, trainer.step, clips)


def last_validation(metrics: Path) -> dict:
    """The last validation record of a run's metrics.jsonl."""
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line]
    valid = [r for r in records if r.get("event") == "valid"]
    if not valid:
        raise ValueError(f"{metrics}: no validation record (trainer.steps 0?)")
    return valid[-1]


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    run_dir, overrides = Path(argv[0]), argv[1:]
    try:
        result = train_demo(run_dir, overrides)
    except (ValueError, HydraException, OmegaConfBaseException) as err:  # a bad override
        sys.exit(f"demo train: {first_line(err)}")
    print(result.describe())


if __name__ == "__main__":
    main(sys.argv[1:])
