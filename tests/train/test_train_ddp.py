"""Two gloo processes train together: identical generator weights and codebooks on both ranks,
then the run resumes from its checkpoint; checkpoint faults on one rank (a failed write, a
file that one rank cannot read, a damaged file) leave every rank at the same step. Each run
has a deadline, after which its processes are killed and the test fails (a hang).

As under torchrun, the TCPStore is the launcher's (this process's) and every rank is its
client (TORCHELASTIC_USE_AGENT_STORE), so no rank serves it while another tears down."""

import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from codec.train.checkpoint import list_checkpoints, load_checkpoint

DEADLINE = 600  # seconds


def inject(rank: int, faults: dict) -> None:
    """Faults on this rank only: "write_limit" {rank: bytes} caps its file writes for real
    (RLIMIT_FSIZE: a write past it fails with EFBIG, as a full disk fails with ENOSPC);
    "unreadable" {rank: step} makes that step's checkpoint fail to load here, as a file that
    one node of a network file system sees half-synced."""
    if rank in faults.get("write_limit", {}):
        import resource
        import signal

        limit = faults["write_limit"][rank]
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    if rank in faults.get("unreadable", {}):
        from codec.train import agree
        from codec.train.checkpoint import CheckpointError

        step, load = faults["unreadable"][rank], agree.load_checkpoint

        def damaged_here(path):
            if agree.step_of(path) == step:
                raise CheckpointError(f"{path}: unreadable checkpoint (injected on rank {rank})")
            return load(path)

        agree.load_checkpoint = damaged_here


def worker(rank, world, port, run_dir, overrides, out, faults):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        TORCHELASTIC_USE_AGENT_STORE="True",
    )
    from codec.train import Trainer, compose_config
    from codec.train.entry import release_process_group

    inject(rank, faults)
    trainer = Trainer(compose_config([*overrides, f"run_dir={run_dir}"], job_name="ddp"))
    result = {"resumed_at": -1}
    try:
        trainer.run()
        result |= {"model": trainer.model.state_dict(), "step": trainer.step}
    except SystemExit as stop:  # what this rank would print before exiting
        result["exit"] = str(stop.code)
    result["resumed_at"] = trainer.loop.resumed_at if trainer.loop.resumed_at is not None else -1
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))
    del trainer  # its DDP wrappers hold the process group
    release_process_group()


def run(run_dir, steps, out, tiny_overrides, checkpoint_every=3, faults=None):
    """Train with 2 ranks to `steps`; each rank's result: model, step and resumed_at (-1 for a
    fresh start), or the exit line."""
    overrides = [
        *tiny_overrides,
        f"trainer.steps={steps}",
        f"trainer.checkpoint_every={checkpoint_every}",
        "trainer.valid_every=1000",
        "trainer.tensorboard=false",
    ]
    for rank in range(2):
        (out / f"rank{rank}.pt").unlink(missing_ok=True)
    store = dist.TCPStore("127.0.0.1", 0, world_size=2, is_master=True, wait_for_workers=False)
    args = (2, store.port, str(run_dir), overrides, str(out), faults or {})
    context = mp.start_processes(worker, args=args, nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + DEADLINE
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"the 2-rank run to step {steps} did not end within {DEADLINE} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def assert_same_model(ranks):
    for key, value in ranks[0]["model"].items():
        assert torch.equal(value, ranks[1]["model"][key]), key


def checkpoint_steps(run_dir) -> list[int]:
    return [load_checkpoint(path)["step"] for path in list_checkpoints(run_dir)]


def test_two_ranks_train_identically_and_resume(tmp_path, tiny_train_overrides):
    run_dir = tmp_path / "run"
    first = run(run_dir, 3, tmp_path, tiny_train_overrides)
    assert first[0]["step"] == first[1]["step"] == 3
    assert_same_model(first)
    assert checkpoint_steps(run_dir)[-1] == 3
    second = run(run_dir, 5, tmp_path, tiny_train_overrides)
    assert [r["resumed_at"] for r in second] == [3, 3]
    assert second[0]["step"] == second[1]["step"] == 5
    assert_same_model(second)
    assert checkpoint_steps(run_dir)[-1] == 5
    key = "quantizer._codebook.embed"
    assert not torch.equal(first[0]["model"][key], second[0]["model"][key])  # it kept training


def test_checkpoint_faults_on_one_rank_leave_every_rank_at_the_same_step(
    tmp_path, tiny_train_overrides
):
    run_dir, every = tmp_path / "run", {"checkpoint_every": 2}
    run(run_dir, 4, tmp_path, tiny_train_overrides, **every)
    assert checkpoint_steps(run_dir) == [2, 4]

    # rank 0's disk fills: its step-6 write fails (200 kB per file; a checkpoint is ~700 kB)
    limit = {"write_limit": {0: 200_000}}
    full = run(run_dir, 8, tmp_path, tiny_train_overrides, faults=limit, **every)
    line = (
        f"codec train: could not write the step 6 checkpoint in {run_dir} (File too large); "
        f"{run_dir / 'step_00000004.ckpt'} is intact"
    )
    assert [r["exit"] for r in full] == [line, line]  # rank 1 stops with it, not in a collective
    assert [r["resumed_at"] for r in full] == [4, 4]
    assert checkpoint_steps(run_dir) == [2, 4] and not list(run_dir.glob(".*.tmp"))

    # the newest checkpoint is unreadable on rank 1 only: both ranks take the older one
    split = run(run_dir, 6, tmp_path, tiny_train_overrides, faults={"unreadable": {1: 4}}, **every)
    assert [r["resumed_at"] for r in split] == [2, 2]
    assert split[0]["step"] == split[1]["step"] == 6
    assert_same_model(split)

    # the newest checkpoint is damaged on disk (cut in half): every rank takes the one before
    newest = list_checkpoints(run_dir)[-1]
    assert newest.name == "step_00000006.ckpt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    damaged = run(run_dir, 8, tmp_path, tiny_train_overrides, **every)
    assert [r["resumed_at"] for r in damaged] == [4, 4]
    assert damaged[0]["step"] == damaged[1]["step"] == 8
    assert_same_model(damaged)
