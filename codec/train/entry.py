"""`codec train [hydra overrides]`: compose the config, build the codec's solver and the
generic loop, train; errors a user causes end the run with one line."""

from __future__ import annotations

import gc
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


def release_process_group() -> None:
    """Collect what reference cycles still hold (a trainer's DDP wrappers hold the process
    group), then destroy the group, so that its gloo threads end while the interpreter is
    whole: a group freed during interpreter finalisation has ended a worker with SIGABRT
    ("terminate called without an active exception") after training had finished. Drop your
    own references to the trainer first."""
    gc.collect()
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> Path:
    """Compose the config from configs/ with `argv` overrides and train."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(sys.argv[1:] if argv is None else argv)
    trainer = failure = None
    try:
        trainer = Trainer(compose_config(overrides))
        return trainer.run()
    except (
        CheckpointError,  # a damaged or foreign checkpoint
        ResumeRefused,  # a resume onto held-out files
        NoAudioError,  # no training data
        ValueError,  # a bad setting
        HydraException,  # overrides that do not compose
        OmegaConfBaseException,
    ) as err:
        failure = f"codec train: {first_line(err)}"  # raised once err's frames are released
    finally:
        trainer = None
        if dist.is_initialized():
            release_process_group()
    raise SystemExit(failure)
