"""A training loop that knows nothing of what it trains.

    Loop(solver, env, cfg).run():
        run_dir/config.yaml, the solver's run files -> resume from the newest checkpoint
        -> for each batch: stop request? -> solver.train_step -> log, validate, checkpoint
        -> final checkpoint and export (run_dir/model)

The loop owns the step and epoch counters, the best validation score, the random state,
checkpoints (atomic, rotated, weights_only), the logs (run_dir/metrics.jsonl, TensorBoard, a
progress bar), SIGTERM/SIGINT stop requests, non-finite step skipping with a restore of the last
good checkpoint, and DDP agreement on all of them. What is trained, and how, is the solver's
(see `Solver`); `codec.train.solver.CompressionSolver` is the codec's.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from codec.errors import first_line
from codec.fileio import atomic_write_bytes
from codec.train.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    remove_stale_temps,
    save_checkpoint,
)
from codec.train.display import Progress, TensorBoard
from codec.train.signals import StopRequest

Log = Callable[[dict], None]


class NonFiniteStep(Exception):
    """A step whose loss or gradient is not finite; the loop skips it on every rank."""


@dataclass(frozen=True)
class Environment:
    """Where this process trains: its rank among `world` processes and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> tuple[int, int]:
    """(rank, world size), starting the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def setup_environment(device: str, seed: int, threads: int | None = None) -> Environment:
    """Join the process group (under torchrun), set the thread count, and seed this rank."""
    rank, world = setup_distributed()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed + rank)
    random.seed(seed + rank)
    return Environment(rank, world, torch.device(device))


def check_finite(values: dict[str, torch.Tensor], env: Environment) -> None:
    """Raise NonFiniteStep on every rank if any rank has a non-finite value, so that all ranks
    skip the step together (one rank alone in backward would hang DDP)."""
    bad = [name for name, value in values.items() if not torch.isfinite(value).all()]
    if env.world > 1:
        flag = torch.tensor([float(bool(bad))], device=env.device)
        dist.all_reduce(flag)
        if flag.item() > 0 and not bad:
            bad = ["on another rank"]
    if bad:
        raise NonFiniteStep(f"non-finite loss: {', '.join(bad)}")


class Solver(Protocol):
    """What the loop needs from the thing it trains."""

    best_metric: str  # the validation score (lower is better) that picks run_dir/best
    progress_keys: tuple[str, ...]  # step logs shown on the progress bar
    rate_name: str  # the logged throughput's name, e.g. "audio_seconds_per_second"
    rate_label: str  # and its label on the progress bar
    units_per_step: float  # what one step trains, in the throughput's unit (all ranks)

    def epoch_batches(self, epoch: int) -> Iterable: ...

    def train_step(self, batch: Any, step: int, log: Log) -> dict[str, float]:
        """One optimisation step; raises NonFiniteStep (gradients cleared) to be skipped."""

    def step_telemetry(self) -> dict: ...  # added to the logged step records

    def validate(self, step: int, board: TensorBoard | None) -> dict[str, float]: ...

    def state_dict(self) -> dict: ...  # tensors and plain values only (weights_only loading)

    def load_state_dict(self, state: dict) -> None: ...

    def export(self, folder: Path) -> Path: ...  # the trained result, for use after training

    def write_run_files(self, run_dir: Path) -> None: ...  # on the main rank, at the start

    def describe(self) -> dict: ...  # fields of the logged start record


class Loop:
    """Runs `solver` for cfg.trainer.steps steps in cfg.run_dir; `name` prefixes its errors."""

    def __init__(self, solver: Solver, env: Environment, cfg: DictConfig, name: str = "train"):
        self.solver, self.env, self.cfg, self.name = solver, env, cfg, name
        self.trainer = cfg.trainer
        self.run_dir = Path(cfg.run_dir)
        self.step, self.epoch, self.best, self.bad_steps = 0, 0, float("inf"), 0
        wants_board = env.main and self.trainer.tensorboard
        self.board = TensorBoard.open(self.run_dir / "tb") if wants_board else None
        if wants_board and self.board is None:
            print("note: TensorBoard logging is off (pip install tensorboard)", file=sys.stderr)

    # -- checkpoints ---------------------------------------------------------------------------

    def state(self) -> dict:
        return (
            {"step": self.step, "epoch": self.epoch, "best": self.best}
            | self.solver.state_dict()
            | {
                "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
                "config": OmegaConf.to_container(self.cfg, resolve=True),
            }
        )

    def load_state(self, state: dict) -> None:
        self.step, self.epoch, self.best = state["step"], state["epoch"], state["best"]
        self.solver.load_state_dict(state)
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(_as_tuple(state["rng"]["python"]))

    def save(self, folder: Path | None = None, keep_last: int | None = None) -> None:
        """Write a checkpoint (rank 0). A failed write (disk full, ...) ends the run with one
        line; the previous checkpoint is intact because writes are atomic."""
        if not self.env.main:
            return
        folder = folder or self.run_dir
        keep = self.trainer.keep_last if keep_last is None else keep_last
        with self._fatal_on_write_error(f"the step {self.step} checkpoint in {folder}"):
            save_checkpoint(folder, self.step, self.state(), keep)

    def export(self) -> Path:
        target = self.run_dir / "model"
        with self._fatal_on_write_error(f"the model {target}"):
            return self.solver.export(target)

    @contextlib.contextmanager
    def _fatal_on_write_error(self, what: str):
        try:
            yield
        except OSError as err:  # checkpoints and models are written so that a failure is one
            why = err.strerror or first_line(err)
            found = list_checkpoints(self.run_dir)
            raise SystemExit(
                f"{self.name}: could not write {what} ({why}); "
                + (f"{found[-1]} is intact" if found else "no earlier checkpoint exists")
            ) from None

    def restore_last_good(self) -> None:
        state = latest_checkpoint(self.run_dir)
        if state is None:
            raise SystemExit(f"{self.name}: too many non-finite steps and no checkpoint to restore")
        self.load_state(state)
        print(
            f"restored the last good checkpoint {state['path']} (step {self.step}) after "
            f"{self.trainer.max_bad_steps} non-finite steps in a row",
            file=sys.stderr,
        )
        self.bad_steps = 0

    # -- logs ----------------------------------------------------------------------------------

    def log(self, record: dict) -> None:
        if not self.env.main:
            return
        line = json.dumps({"step": self.step, "time": round(time.time(), 3)} | record)
        with open(self.run_dir / "metrics.jsonl", "a") as handle:
            handle.write(line + "\n")
        if self.board is not None:
            self.board.scalars(self.step, record)

    # -- the loop ------------------------------------------------------------------------------

    def batches(self):
        while True:
            yield from self.solver.epoch_batches(self.epoch)
            self.epoch += 1

    def run(self) -> Path:
        main = self.env.main
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if main:
            for folder in (self.run_dir, self.run_dir / "best", self.run_dir / "model"):
                for path in remove_stale_temps(folder):
                    print(f"removed {path}, left by an interrupted write", file=sys.stderr)
            atomic_write_bytes(self.run_dir / "config.yaml", OmegaConf.to_yaml(self.cfg).encode())
            self.solver.write_run_files(self.run_dir)
        resumed = latest_checkpoint(self.run_dir)
        if resumed is not None:
            self.load_state(resumed)
            if main:
                print(f"resumed from {resumed['path']} at step {self.step}", file=sys.stderr)
        self.log({"event": "start"} | self.solver.describe())
        progress = Progress(
            self.trainer.steps,
            self.step,
            main and self.trainer.progress,
            self.solver.progress_keys,
            self.solver.rate_label,
        )
        with StopRequest() as stop:
            self._loop(progress, time.perf_counter(), stop)
        progress.close()
        if main:
            self.save()
            exported = self.export()
            if stop.signal is not None:
                print(
                    f"stopped by {stop.signal} at step {self.step}: checkpoint and model written; "
                    "the same command resumes",
                    file=sys.stderr,
                )
            else:
                print(f"trained {self.step} steps; model in {exported}", file=sys.stderr)
        return self.run_dir / "model"

    def _loop(self, progress: Progress, started: float, stop: StopRequest) -> None:
        trainer, env, solver = self.trainer, self.env, self.solver
        for batch in self.batches():
            if self.step >= trainer.steps:
                break
            # under DDP, asking the other ranks costs a collective and a host sync, so they
            # are asked every log_every steps; alone, the flag is read every step
            ask = env.world == 1 or self.step % trainer.log_every == 0
            if ask and stop.agreed(env.world, env.device):
                self.log({"event": "stopped", "signal": stop.signal or "on another rank"})
                break
            try:
                logs = solver.train_step(batch, self.step, self.log)
                self.bad_steps = 0
            except NonFiniteStep as err:
                self.bad_steps += 1
                self.log({"event": "skipped_step", "reason": str(err)})
                if env.main:
                    print(f"warning: step {self.step} skipped: {err}", file=sys.stderr)
                if self.bad_steps >= trainer.max_bad_steps:
                    self.restore_last_good()
                continue
            self.step += 1
            if self.step % trainer.log_every == 0 or self.step == 1:
                elapsed = time.perf_counter() - started
                rate = solver.units_per_step * (self.step - progress.start) / max(elapsed, 1e-9)
                self.log(logs | {solver.rate_name: rate} | solver.step_telemetry())
                progress.show(self.step, logs, rate)
            if self.step % trainer.valid_every == 0 or self.step == trainer.steps:
                metrics = solver.validate(self.step, self.board) if env.main else {}
                self.log({"event": "valid"} | metrics)
                if env.main and metrics.get(solver.best_metric, float("inf")) < self.best:
                    self.best = metrics[solver.best_metric]
                    self.save(self.run_dir / "best", keep_last=1)
                if env.main:
                    progress.note(metrics)
            if self.step % trainer.checkpoint_every == 0 and self.step < trainer.steps:
                self.save()  # the last step's checkpoint and model are written once, by run()
                if env.main:
                    self.export()


def _as_tuple(value):
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value
