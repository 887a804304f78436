"""`codec train [hydra overrides]`: compose the config, build the codec's solver and the
generic loop, train; errors a user causes end the run with one line."""

from __future__ import annotations

import sys
from pathlib import Path

import torch.distributed as dist
from omegaconf import DictConfig

from codec.errors import CheckpointError, first_line
from codec.train.config import check_trainer_config, compose_config
from codec.train.data import NoAudioError
from codec.train.loop import Loop, setup_environment
from codec.train.solver import CompressionSolver, ResumeRefused


class Trainer:
    """The codec's solver in the generic loop, built from a composed config."""

    def __init__(self, cfg: DictConfig):
        check_trainer_config(cfg)
        env = setup_environment(cfg.trainer.device, cfg.seed, cfg.trainer.threads)
        self.solver = CompressionSolver(cfg, env)
        self.loop = Loop(self.solver, env, cfg, name="codec train")

    @property
    def model(self):
        return self.solver.model

    @property
    def step(self) -> int:
        return self.loop.step

    def run(self) -> Path:
        return self.loop.run()


def main(argv: list[str] | None = None) -> Path:
    """Compose the config from configs/ with `argv` overrides and train."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(sys.argv[1:] if argv is None else argv)
    try:
        return Trainer(compose_config(overrides)).run()
    except (
        CheckpointError,  # a damaged or foreign checkpoint
        ResumeRefused,  # a resume onto held-out files
        NoAudioError,  # no training data
        ValueError,  # a bad setting
        HydraException,  # overrides that do not compose
        OmegaConfBaseException,
    ) as err:
        raise SystemExit(f"codec train: {first_line(err)}") from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
