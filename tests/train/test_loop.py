"""The generic loop drives a solver that is not a codec: a least-squares line fit. Checkpoints,
resume, best-by-validation, export and non-finite skipping need nothing codec-specific."""

import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from codec.train.checkpoint import list_checkpoints, load_checkpoint
from codec.train.loop import Environment, Loop, NonFiniteStep


class LineFit:
    """Fits y = 3 x + 1 by SGD; `poisoned` steps return a non-finite loss."""

    best_metric = "valid_error"
    progress_keys = ("loss",)
    rate_name = "points_per_second"
    rate_label = "points/s"
    units_per_step = 16.0

    def __init__(self, poisoned=()):
        self.line = torch.nn.Linear(1, 1)
        self.opt = torch.optim.SGD(self.line.parameters(), lr=0.1)
        self.poisoned = set(poisoned)
        self.calls = 0

    def epoch_batches(self, epoch, skip=0):
        g = torch.Generator().manual_seed(epoch)
        for batch in range(4):
            x = torch.rand(16, 1, generator=g)
            if batch >= skip:
                yield x, 3 * x + 1

    def train_step(self, batch, step, log):
        self.calls += 1
        x, y = batch
        y = y + 0.01 * torch.randn(y.shape)  # a draw from the global generator, as dropout's
        loss = (self.line(x) - y).pow(2).mean()
        if self.calls in self.poisoned:
            raise NonFiniteStep("non-finite loss: loss")
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach())}

    def step_telemetry(self):
        return {"slope": float(self.line.weight.detach())}

    @torch.no_grad()
    def validate(self, step, board):
        x = torch.linspace(0, 1, 8)[:, None]
        return {"valid_error": float((self.line(x) - (3 * x + 1)).abs().mean())}

    def state_dict(self):
        return {"line": self.line.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state):
        self.line.load_state_dict(state["line"])
        self.opt.load_state_dict(state["opt"])

    def export(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.line.state_dict(), folder / "line.pt")
        return folder

    def write_run_files(self, run_dir):
        (run_dir / "notes.txt").write_text("a line fit\n")

    def describe(self):
        return {"parameters": 2}


def config(run_dir, steps):
    trainer = {
        "steps": steps,
        "log_every": 1,
        "valid_every": 2,
        "checkpoint_every": 3,
        "keep_last": 2,
        "max_bad_steps": 2,
        "progress": False,
        "tensorboard": False,
    }
    return OmegaConf.create({"run_dir": str(run_dir), "trainer": trainer})


def logged(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


ENV = Environment(rank=0, world=1, device=torch.device("cpu"))


def test_the_loop_trains_checkpoints_and_resumes_any_solver(tmp_path):
    run = tmp_path / "run"
    torch.manual_seed(0)
    Loop(LineFit(), ENV, config(run, 6)).run()
    assert load_checkpoint(list_checkpoints(run)[-1])["step"] == 6
    assert list_checkpoints(run / "best") and (run / "model" / "line.pt").is_file()
    assert (run / "notes.txt").is_file() and (run / "config.yaml").is_file()
    records = logged(run)
    assert records[0] == records[0] | {"event": "start", "parameters": 2}
    assert all("slope" in r and "points_per_second" in r for r in records if "loss" in r)

    resumed = LineFit()
    loop = Loop(resumed, ENV, config(run, 10))
    loop.run()
    assert loop.step == 10 and load_checkpoint(list_checkpoints(run)[-1])["step"] == 10
    steps = [r["step"] for r in logged(run) if "loss" in r]
    assert steps == list(range(1, 11))  # resumed at 6: no step trained twice
    assert abs(float(resumed.line.weight.detach()) - 3) < abs(0.0 - 3)  # it learned toward the line


def test_non_finite_steps_are_skipped_then_the_last_checkpoint_restored(tmp_path):
    run = tmp_path / "run"
    Loop(LineFit(), ENV, config(run, 3)).run()
    solver = LineFit(poisoned={2, 3})  # two in a row = max_bad_steps: back to step 3
    Loop(solver, ENV, config(run, 5)).run()
    events = [r.get("event") for r in logged(run)]
    assert events.count("skipped_step") == 2
    assert load_checkpoint(list_checkpoints(run)[-1])["step"] == 5


def test_a_run_stopped_mid_epoch_and_resumed_equals_one_that_never_stopped(tmp_path):
    """4 batches an epoch: stopped after step 5 (epoch 1, one batch drawn), resumed to 10. The
    resumed run draws the batches and the random numbers the unbroken run drew: its losses
    and weights are the same bit for bit."""
    torch.manual_seed(0)
    whole = LineFit()
    Loop(whole, ENV, config(tmp_path / "whole", 10)).run()
    torch.manual_seed(0)
    Loop(LineFit(), ENV, config(tmp_path / "split", 5)).run()
    state = load_checkpoint(list_checkpoints(tmp_path / "split")[-1])
    assert (state["step"], state["epoch"], state["drawn"]) == (5, 1, 1)
    torch.manual_seed(123)  # a new process seeds anew; the checkpoint's random state wins
    resumed = LineFit()
    Loop(resumed, ENV, config(tmp_path / "split", 10)).run()
    losses = {r["step"]: r["loss"] for r in logged(tmp_path / "whole") if "loss" in r}
    assert {r["step"]: r["loss"] for r in logged(tmp_path / "split") if "loss" in r} == losses
    assert torch.equal(resumed.line.weight, whole.line.weight)
    assert torch.equal(resumed.line.bias, whole.line.bias)
