"""A training loop that knows nothing of what it trains.

    Loop(solver, env, cfg).run():
        run_dir/config.yaml, the solver's run files -> resume from the newest checkpoint
        -> for each batch: stop request? -> solver.train_step -> log, validate, checkpoint
        -> final checkpoint and export (run_dir/model)

The loop owns the step and epoch counters, the position in the epoch's batches, the best
validation score, every rank's random state, checkpoints (atomic, rotated, weights_only), the
logs (run_dir/metrics.jsonl, TensorBoard, a progress bar), SIGTERM/SIGINT stop requests,
non-finite step skipping with a restore of the last good checkpoint, and DDP agreement on all
of them (codec.train.agree). What is trained, and how, is the solver's (see `Solver`);
`codec.train.solver.CompressionSolver` is the codec's.

A resume changes nothing: a checkpoint holds everything the next step depends on (the solver's
state, each rank's random state, the epoch and how many of its batches were drawn), so a run
killed and resumed trains the same batches to the same weights as one that never stopped
(tests/train/test_torchrun_faults.py compares them bit for bit).
"""

from __future__ import annotations

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
from codec.train.agree import resume_state, rng_states, set_rng_state, write_outcome
from codec.train.checkpoint import list_checkpoints, remove_stale_temps, save_checkpoint
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


def restart_safe_store() -> dict:
    """init_process_group arguments that keep a restarted torchrun worker group off the keys
    of the group before it.

    Under torchrun the workers share the agent's TCPStore (TORCHELASTIC_USE_AGENT_STORE), and
    the agent keeps it across `--max-restarts` restarts. torch 2.11 gives every attempt the same
    key names, so a restarted rank can read the address a killed rank published and fail with
    "Gloo connectFullMesh failed ... Connection refused". Each attempt gets its own prefix,
    TORCHELASTIC_RESTART_COUNT, which every rank of a one-node job shares; elsewhere ({}) the
    default env:// start is used (a store that rank 0 starts anew)."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return {}
    agent = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return {
        "store": dist.PrefixStore(f"codec/attempt_{attempt}", agent),
        "rank": int(os.environ["RANK"]),
        "world_size": int(os.environ["WORLD_SIZE"]),
    }


def setup_distributed() -> tuple[int, int]:
    """(rank, world size), starting the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, **restart_safe_store())
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

    def epoch_batches(self, epoch: int, skip: int = 0) -> Iterable:
        """Epoch `epoch`'s batches for this rank from its batch `skip` on; the same for the same
        (epoch, skip) in any process, so that a resumed run draws what an unbroken one does."""

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
        self.drawn = 0  # batches of this epoch drawn so far (trained or skipped as non-finite)
        self.resumed_at: int | None = None  # the step of the checkpoint run() resumed from
        wants_board = env.main and self.trainer.tensorboard
        self.board = TensorBoard.open(self.run_dir / "tb") if wants_board else None
        if wants_board and self.board is None:
            print("note: TensorBoard logging is off (pip install tensorboard)", file=sys.stderr)

    # -- checkpoints ---------------------------------------------------------------------------

    def state(self, rng: list[dict] | None = None) -> dict:
        """The checkpoint: counters, the solver's state, `rng` (every rank's random state, from
        agree.rng_states; this process's alone when not given) and the config."""
        return (
            {"step": self.step, "epoch": self.epoch, "best": self.best}
            | {"drawn": self.drawn, "world": self.env.world}
            | self.solver.state_dict()
            | {
                "rng": rng if rng is not None else rng_states(),
                "config": OmegaConf.to_container(self.cfg, resolve=True),
            }
        )

    def load_state(self, state: dict, data_position: bool = True) -> None:
        """Load a checkpoint; with data_position=False the epoch and batch position are kept
        (the batches drawn since are not drawn again)."""
        self.step, self.best = state["step"], state["best"]
        if data_position:
            self.epoch, self.drawn = state["epoch"], state.get("drawn", 0)
            saved_world = state.get("world", self.env.world)
            if saved_world != self.env.world:  # the same share of the epoch, not the same batches
                self.drawn = self.drawn * saved_world // self.env.world
        self.solver.load_state_dict(state)
        if not set_rng_state(state["rng"], self.env.rank):
            seed = self.cfg.seed * 1_000_003 + self.step * 1_009 + self.env.rank
            torch.manual_seed(seed)
            random.seed(seed)

    def write(self, checkpoint: bool = True, best: bool = False) -> None:
        """Rank 0 writes the step checkpoint and the model (`checkpoint`) and the best one
        (`best`); every rank takes part, because the checkpoint holds every rank's random state
        and a failed write (disk full, ...) must end every rank, with one line naming the last
        intact checkpoint (writes are atomic)."""
        rng = rng_states(self.env.world, self.env.device)
        failure = None
        if self.env.main:
            state, run_dir = self.state(rng), self.run_dir
            writes = []
            if best:
                where = f"the step {self.step} checkpoint in {run_dir / 'best'}"
                writes.append(
                    (where, lambda: save_checkpoint(run_dir / "best", self.step, state, 1))
                )
            if checkpoint:
                keep = self.trainer.keep_last
                where = f"the step {self.step} checkpoint in {run_dir}"
                writes.append((where, lambda: save_checkpoint(run_dir, self.step, state, keep)))
                writes.append(
                    (
                        f"the model {run_dir / 'model'}",
                        lambda: self.solver.export(run_dir / "model"),
                    )
                )
            for what, action in writes:
                try:
                    action()
                except OSError as err:  # written so that a failure is an OSError with a reason
                    found = list_checkpoints(run_dir)
                    failure = (
                        f"{self.name}: could not write {what} ({err.strerror or first_line(err)}); "
                        + (f"{found[-1]} is intact" if found else "no earlier checkpoint exists")
                    )
                    break
        write_outcome(failure, self.env.world, self.env.device)

    def restore_last_good(self) -> None:
        state = resume_state(self.run_dir, self.env.world, self.env.device)
        if state is None:
            raise SystemExit(f"{self.name}: too many non-finite steps and no checkpoint to restore")
        self.load_state(state, data_position=False)
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
        """Batches from the current position on; self.drawn counts those handed out."""
        while True:
            for batch in self.solver.epoch_batches(self.epoch, self.drawn):
                self.drawn += 1
                yield batch
            self.epoch, self.drawn = self.epoch + 1, 0

    def run(self) -> Path:
        main = self.env.main
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if main:
            for folder in (self.run_dir, self.run_dir / "best", self.run_dir / "model"):
                for path in remove_stale_temps(folder):
                    print(f"removed {path}, left by an interrupted write", file=sys.stderr)
            atomic_write_bytes(self.run_dir / "config.yaml", OmegaConf.to_yaml(self.cfg).encode())
            self.solver.write_run_files(self.run_dir)
        resumed = resume_state(self.run_dir, self.env.world, self.env.device)
        if resumed is not None:
            self.load_state(resumed)
            self.resumed_at = self.step
            if main:
                print(f"resumed from {resumed['path']} at step {self.step}", file=sys.stderr)
        position = {"epoch": self.epoch, "drawn": self.drawn}
        self.log({"event": "start"} | position | self.solver.describe())
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
        self.write()
        if main:
            if stop.signal is not None:
                print(
                    f"stopped by {stop.signal} at step {self.step}: checkpoint and model written; "
                    "the same command resumes",
                    file=sys.stderr,
                )
            else:
                print(
                    f"trained {self.step} steps; model in {self.run_dir / 'model'}", file=sys.stderr
                )
        return self.run_dir / "model"

    def _loop(self, progress: Progress, started: float, stop: StopRequest) -> None:
        trainer, env, solver = self.trainer, self.env, self.solver
        batches = self.batches()
        while self.step < trainer.steps:  # checked before a batch is drawn: none is wasted
            # under DDP, asking the other ranks costs a collective and a host sync, so they
            # are asked every log_every steps; alone, the flag is read every step
            ask = env.world == 1 or self.step % trainer.log_every == 0
            if ask and stop.agreed(env.world, env.device):
                self.log({"event": "stopped", "signal": stop.signal or "on another rank"})
                break
            batch = next(batches)
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
            better = False
            validate = self.step % trainer.valid_every == 0 or self.step == trainer.steps
            if validate:
                metrics = solver.validate(self.step, self.board) if env.main else {}
                self.log({"event": "valid"} | metrics)
                if env.main and metrics.get(solver.best_metric, float("inf")) < self.best:
                    self.best, better = metrics[solver.best_metric], True
                if env.main:
                    progress.note(metrics)
            # the last step's checkpoint and model are written once, by run()
            due = self.step % trainer.checkpoint_every == 0 and self.step < trainer.steps
            if due or validate:  # on every rank (a collective); `better` is rank 0's alone
                self.write(checkpoint=due, best=better)
