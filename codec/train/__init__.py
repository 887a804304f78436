"""Training: `codec train [hydra overrides]` or `python -m codec.train [overrides]`.

One run lives in `run_dir`: the resolved config (config.yaml), its held-out files (heldout.txt),
checkpoints (step_*.ckpt, best/), metrics (metrics.jsonl) and the exported model (model/, the
save_pretrained format that `codec encode` reads). Starting a run whose run_dir holds
checkpoints resumes from the newest; `init_from=MODEL_DIR` fine-tunes a saved model with its own
architecture. Under torchrun the same command trains with DDP: every rank reads its share of
the data, rank 0 logs and writes.

    config.py      configs/ through the package, Hydra composition, checks
    loop.py        the generic loop: checkpoints, resume, signals, DDP, logs (knows no codec)
    solver.py      the codec's generator/discriminator step, losses, EMA, validation
    data.py        manifests, split, segments, the demo corpus, a run's loader
    checkpoint.py  atomic, rotated, weights_only checkpoints
    entry.py       main(): config -> solver -> loop, one-line errors
"""

from codec.train.config import compose_config
from codec.train.data import held_out_paths
from codec.train.entry import Trainer, main

__all__ = ["Trainer", "compose_config", "held_out_paths", "main"]
