"""Faults under torchrun, on CPU with gloo over the loopback interface: a worker killed and
restarted by `--max-restarts`, two agents joined by a c10d rendezvous on one host, and a
tokenize rank killed mid-shard.

Every job runs `python -m torch.distributed.run` (torchrun) with a deadline. Its processes
(the agent, the workers, restarted workers) carry a token in their environment, and are found
by it and SIGKILLed at teardown, even when a dead agent left them to init."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.train.checkpoint import list_checkpoints, load_checkpoint

LOOPBACK = next((name for _, name in socket.if_nameindex() if name.startswith("lo")), "lo")
DEADLINE = 600  # seconds a job may take before it is killed and the test fails (a hang)
STEPS, EVERY = 8, 3  # trainer.steps and trainer.checkpoint_every of the training jobs

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="finds its processes through /proc"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Jobs:
    """torchrun jobs whose processes are all found by a token in their environment."""

    def __init__(self, folder: Path):
        self.folder, self.token, self.started = folder, uuid.uuid4().hex, []

    def start(self, args: list[str], name: str, env=None, **popen) -> subprocess.Popen:
        env = (os.environ if env is None else env) | {
            "CODEC_TEST_JOB": self.token,
            "GLOO_SOCKET_IFNAME": LOOPBACK,  # collectives over loopback only
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        log = open(self.folder / f"{name}.log", "w")
        cmd = [sys.executable, "-m", "torch.distributed.run", *args]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, **popen)
        proc.name, proc.log = name, self.folder / f"{name}.log"
        self.started.append(proc)
        return proc

    def wait(self, proc: subprocess.Popen, timeout: float = DEADLINE) -> int:
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            pytest.fail(f"{proc.name} did not end within {timeout} s:\n{tail(proc.log)}")

    def pids(self, **wanted: str) -> list[int]:
        """Processes of these jobs whose environment has every `wanted` NAME=value."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                env = dict(
                    item.split("=", 1)
                    for item in (entry / "environ").read_text(errors="replace").split("\0")
                    if "=" in item
                )
            except OSError:  # gone, or not ours to read
                continue
            if env.get("CODEC_TEST_JOB") == self.token and all(
                env.get(k) == v for k, v in wanted.items()
            ):
                found.append(int(entry.name))
        return found

    def kill_all(self) -> None:
        for _ in range(3):  # an agent may be starting a worker while we kill
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for proc in self.started:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            if not self.pids():
                return
            time.sleep(0.5)


@pytest.fixture
def jobs(tmp_path):
    pool = Jobs(tmp_path)
    yield pool
    pool.kill_all()


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def until(condition, proc: subprocess.Popen, what: str, timeout: float = DEADLINE) -> None:
    """Poll `condition` every 20 ms until it holds; fail if `proc` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(
                f"{proc.name} ended (code {proc.returncode}) before {what}:\n{tail(proc.log)}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s:\n{tail(proc.log)}")
        time.sleep(0.02)


# -- training ------------------------------------------------------------------------------------


def train_args(tiny: tuple[str, ...], run_dir: Path) -> list[str]:
    return [
        "-m",
        "codec.train",
        *tiny,
        f"trainer.steps={STEPS}",
        f"trainer.checkpoint_every={EVERY}",
        "trainer.log_every=1",
        "trainer.valid_every=1000",
        "trainer.tensorboard=false",
        f"run_dir={run_dir}",
    ]


def one_node(restarts: int = 0) -> list[str]:
    port = str(free_port())
    return ["--nnodes", "1", "--nproc-per-node", "2", "--max-restarts", str(restarts)] + [
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        port,
    ]


def records(run_dir: Path) -> list[dict]:
    import json

    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def trained_past(run_dir: Path, step: int) -> bool:
    return any(r.get("step", 0) > step and "mel" in r for r in records(run_dir))


def final_state(run_dir: Path) -> dict:
    state = load_checkpoint(list_checkpoints(run_dir)[-1])
    assert state["step"] == STEPS
    return {k: v for k, v in state.items() if k != "config"}  # config names the run_dir


def assert_identical(a, b, where: str = "checkpoint") -> None:
    """Nested dicts, lists and tuples of tensors and plain values, equal bit for bit."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def step_losses(logged: list[dict]) -> dict[int, dict]:
    """The last logged losses of every step (a step redone after a restart replaces its first
    record)."""
    keys = ("mel", "l1", "stft", "adv", "feat", "d_loss", "commitment")
    return {r["step"]: {k: r[k] for k in keys if k in r} for r in logged if "mel" in r}


@pytest.fixture(scope="module")
def unbroken_run(tmp_path_factory, tiny_train_overrides) -> Path:
    """The tiny config trained STEPS steps by one agent with 2 workers, never interrupted."""
    folder = tmp_path_factory.mktemp("unbroken")
    pool = Jobs(folder)
    try:
        job = pool.start(one_node() + train_args(tiny_train_overrides, folder / "run"), "unbroken")
        assert pool.wait(job) == 0, tail(job.log)
    finally:
        pool.kill_all()
    return folder / "run"


def test_a_killed_worker_is_restarted_and_the_run_ends_as_if_never_killed(
    jobs, tmp_path, unbroken_run, tiny_train_overrides
):
    """torchrun --max-restarts 1; rank 1 SIGKILLed after the step-3 checkpoint and before the
    step-6 one. torchrun stops rank 0, restarts both, they resume from the newest checkpoint
    (the epoch and the batch position in it are in the checkpoint, so the sampler starts at
    the next batch) and the run ends by itself at step 8 with the checkpoint of the run that
    was never killed: weights, EMA, optimizers, codebooks, random states, bit for bit."""
    run = tmp_path / "run"
    job = jobs.start(one_node(restarts=1) + train_args(tiny_train_overrides, run), "killed")

    until(lambda: trained_past(run, EVERY), job, f"step {EVERY + 1}")
    (worker,) = jobs.pids(RANK="1", TORCHELASTIC_RESTART_COUNT="0")
    os.kill(worker, signal.SIGKILL)
    assert jobs.wait(job) == 0, tail(job.log)

    log = job.log.read_text()
    assert f"failed (exitcode: -9) local_rank: 1 (pid: {worker})" in log
    logged = records(run)
    starts = [i for i, r in enumerate(logged) if r.get("event") == "start"]
    assert len(starts) == 2  # the first start and the restart
    resumed = logged[starts[1]]["step"]
    lost = max(r["step"] for r in logged[: starts[1]])
    assert resumed % EVERY == 0 and 0 < resumed < lost  # steps after the checkpoint were redone
    assert f"resumed from {run / f'step_{resumed:08d}.ckpt'} at step {resumed}" in log

    whole = records(unbroken_run)
    assert sorted(step_losses(logged)) == list(range(1, STEPS + 1))
    assert step_losses(logged) == step_losses(whole)  # the same batches, step by step
    assert_identical(final_state(run), final_state(unbroken_run))


@pytest.mark.slow
@pytest.mark.parametrize("kill", [False, True], ids=["unbroken", "rank-1-killed"])
def test_two_agents_on_one_host_train_what_one_agent_with_two_workers_trains(
    jobs, tmp_path, unbroken_run, tiny_train_overrides, kill
):
    """Two torchrun agents (--nnodes 2, one worker each) meet at a c10d rendezvous on
    127.0.0.1; the run equals the one-agent, two-worker run bit for bit. Killed: rank 1 dies
    after a checkpoint, both agents restart their workers (--max-restarts 1) and the run still
    ends equal. Agents count their restarts apart, so that case runs with
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1: every rendezvous round then gets a new store."""
    run, port = tmp_path / "run", free_port()
    rendezvous = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d"]
    rendezvous += ["--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "two-nodes"]
    rendezvous += ["--local-addr", "127.0.0.1", "--max-restarts", str(int(kill))]
    env = os.environ | ({"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"} if kill else {})
    agents = [
        jobs.start(
            [*rendezvous, "--rdzv-conf", f"is_host={node == 0}"]
            + train_args(tiny_train_overrides, run),
            f"node{node}",
            env=env,
        )
        for node in range(2)
    ]
    if kill:
        until(lambda: trained_past(run, EVERY), agents[0], f"step {EVERY + 1}")
        (worker,) = jobs.pids(RANK="1", TORCHELASTIC_RESTART_COUNT="0")
        os.kill(worker, signal.SIGKILL)
    for agent in agents:
        assert jobs.wait(agent) == 0, tail(agent.log)
    logged = records(run)
    assert sum(r.get("event") == "start" for r in logged) == 1 + kill
    assert step_losses(logged) == step_losses(records(unbroken_run))
    assert_identical(final_state(run), final_state(unbroken_run))


# -- tokenize ------------------------------------------------------------------------------------

SHARD_SIZE = 4


@pytest.fixture
def speech_files(fsdd_root, tmp_path) -> Path:
    """20 FSDD recordings in 5 shards; files 13 and 17 (in shard 3, rank 1's second, and shard
    4, rank 0's third) are 12 s of other recordings joined, so that each rank spends a while
    inside one shard."""
    folder = tmp_path / "speech"
    folder.mkdir()
    recordings = iter(sorted(fsdd_root.glob("*.wav")))
    for i in range(20):
        if i not in (13, 17):
            source = next(recordings)
            shutil.copy(source, folder / f"{i:03d}_{source.name}")
            continue
        joined, rate = [], 8000
        while sum(map(len, joined)) < 12 * rate:
            wav, rate = sf.read(next(recordings), dtype="int16")
            joined.append(wav)
        sf.write(folder / f"{i:03d}_joined.wav", np.concatenate(joined), rate)
    return folder


def tokenize_args(data: Path, out: Path) -> list[str]:
    return ["-m", "codec.cli", "tokenize", str(data), "-m", "speech16k", "-o", str(out)] + [
        "--shard-size",
        str(SHARD_SIZE),
        "-b",
        "6",
    ]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_a_tokenize_rank_killed_mid_shard_then_the_same_command_gives_the_unbroken_shards(
    jobs, tmp_path, speech_files
):
    whole, out = tmp_path / "whole", tmp_path / "tokens"
    job = jobs.start(one_node() + tokenize_args(speech_files, whole), "unbroken")
    assert jobs.wait(job) == 0, tail(job.log)
    shards = sorted(whole.glob("shard_*.index.npy"))
    assert len(shards) == 5

    job = jobs.start(one_node() + tokenize_args(speech_files, out), "killed")
    until(lambda: (out / "shard_00001.index.npy").exists(), job, "rank 1's first shard")
    (worker,) = jobs.pids(RANK="1")
    os.kill(worker, signal.SIGKILL)
    assert jobs.wait(job) != 0  # torchrun reports the dead rank, after stopping rank 0
    assert not (out / "shard_00003.index.npy").exists()  # rank 1 died inside shard 3
    assert not (out / "shard_00004.index.npy").exists()  # and rank 0 was stopped before 4 ended
    assert "codec tokenize: interrupted; no partial outputs left" in job.log.read_text()
    stale = out / ".shard_00003.npy.killed.tmp"  # what a rank killed mid-write leaves
    stale.write_bytes(b"\x93NUMPY partial")

    job = jobs.start(one_node() + tokenize_args(speech_files, out), "again")
    assert jobs.wait(job) == 0, tail(job.log)
    assert f"removed {stale}, left by an interrupted write" in job.log.read_text()
    assert folder_bytes(out) == folder_bytes(whole)  # no temp files, no extra or missing shard
    paths = [p for shard in shards for p in np.load(shard)["path"]]
    assert sorted(paths) == sorted(str(p) for p in speech_files.iterdir())  # each file once
