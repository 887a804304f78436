"""The training config: configs/ (shipped inside the package as codec/configs) composed by
Hydra with command-line overrides, and checked before anything is built."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from omegaconf import DictConfig


@contextlib.contextmanager
def config_dir() -> Iterator[Path]:
    """The folder of the Hydra config groups, found through the installed package (a wheel
    holds it as package data; a source tree or editable install links it to configs/)."""
    with resources.as_file(resources.files("codec") / "configs") as folder:
        if not (folder / "config.yaml").is_file():
            raise FileNotFoundError(f"{folder}: the codec package has no configs/config.yaml")
        yield folder


def compose_config(overrides: list[str], job_name: str = "codec-train") -> DictConfig:
    """configs/config.yaml with Hydra `overrides` applied (no working-directory change)."""
    from hydra import compose, initialize_config_dir

    with config_dir() as folder:
        with initialize_config_dir(str(folder), version_base="1.3", job_name=job_name):
            return compose(config_name="config", overrides=overrides)


def check_trainer_config(cfg: DictConfig) -> None:
    """The step counts and intervals and the discriminator's schedule, checked before
    anything is built."""
    trainer = cfg.trainer
    for key in ("log_every", "valid_every", "checkpoint_every"):
        if not isinstance(trainer[key], int) or trainer[key] < 1:
            raise ValueError(f"trainer.{key} must be a whole number >= 1, got {trainer[key]}")
    if not isinstance(trainer.steps, int) or trainer.steps < 0:
        raise ValueError(f"trainer.steps must be a whole number >= 0, got {trainer.steps}")
    every = cfg.discriminator.get("every", 1)
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"discriminator.every must be a whole number >= 1, got {every}")
    for key in ("lr", "crop_seconds"):
        value = cfg.discriminator.get(key)
        if value is not None and not _positive_number(value):
            raise ValueError(f"discriminator.{key} must be a positive number or null, got {value}")


def _positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
