"""Two gloo processes train together: identical generator weights and codebooks on both ranks,
then the run resumes from its checkpoint."""

import os
import socket

import torch
import torch.multiprocessing as mp

from codec.train.checkpoint import list_checkpoints, load_checkpoint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, world, port, run_dir, steps, out, tiny_overrides):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    from codec.train import Trainer, compose_config

    overrides = [
        *tiny_overrides,
        f"trainer.steps={steps}",
        "trainer.checkpoint_every=3",
        "trainer.valid_every=1000",
        f"run_dir={run_dir}",
    ]
    trainer = Trainer(compose_config(overrides, job_name="ddp"))
    trainer.run()
    torch.save(
        {"model": trainer.model.state_dict(), "step": trainer.step},
        os.path.join(out, f"rank{rank}.pt"),
    )
    torch.distributed.destroy_process_group()


def run(run_dir, steps, out, tiny_overrides):
    args = (2, free_port(), str(run_dir), steps, str(out), list(tiny_overrides))
    mp.spawn(worker, args=args, nprocs=2, join=True)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["step"] == ranks[1]["step"] == steps
    for key, value in ranks[0]["model"].items():
        assert torch.equal(value, ranks[1]["model"][key]), key
    return ranks[0]


def test_two_ranks_train_identically_and_resume(tmp_path, tiny_train_overrides):
    run_dir = tmp_path / "run"
    first = run(run_dir, 3, tmp_path, tiny_train_overrides)
    assert load_checkpoint(list_checkpoints(run_dir)[-1])["step"] == 3
    second = run(run_dir, 5, tmp_path, tiny_train_overrides)
    assert load_checkpoint(list_checkpoints(run_dir)[-1])["step"] == 5
    key = "quantizer._codebook.embed"
    assert not torch.equal(first["model"][key], second["model"][key])  # it kept training
