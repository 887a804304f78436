"""Two gloo processes on CPU: codebooks stay identical across ranks and equal a single process
that sees the concatenated batch (EMA statistics, k-means and dead-code revival are global)."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from codec.quantize import GroupedResidualVQ

OPTIONS = dict(
    dim=32,
    groups=2,
    num_quantizers=4,
    codebook_size=16,
    decay=0.9,
    kmeans_init=True,
    kmeans_iters=3,
    threshold_ema_dead_code=2,
    quantize_dropout=True,
    quantize_dropout_multiple_of=2,
)
STEPS = 6


def batches():
    g = torch.Generator().manual_seed(1)
    # the second half is shifted so that dead codes appear and get revived
    return [torch.randn(4, 12, 32, generator=g) * (1 + step) for step in range(STEPS)]


def make_quantizer():
    torch.manual_seed(0)
    return GroupedResidualVQ(**OPTIONS).train()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, world, port, out_dir):
    # built before the process group exists: distribution is detected at forward time
    quantizer = make_quantizer()
    # the quantizer's own seed differs per rank too, until it syncs at the first forward
    quantizer._rng_seed += rank
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        torch.manual_seed(100 + rank)  # ranks' global RNGs differ; the quantizer must not care
        depths = []
        for step, x in enumerate(batches()):
            local = x.chunk(world)[rank]
            if rank == 0 and step % 2:
                with torch.no_grad():  # must not hang the other rank
                    _, idx, _ = quantizer(local)
            else:
                _, idx, _ = quantizer(local)
            depths.append(int((idx[0, 0, 0] >= 0).sum()))
        state = {k: v for k, v in quantizer.state_dict().items() if not k.endswith("_extra_state")}
        torch.save({"state": state, "depths": depths}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_ranks_match_each_other_and_a_single_process(tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["depths"] == ranks[1]["depths"]
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key

    single = make_quantizer()
    depths, revived = [], 0.0
    for x in batches():
        _, idx, _ = single(x)
        depths.append(int((idx[0, 0, 0] >= 0).sum()))
        revived += float(single.telemetry()["revived"].sum())
    assert depths == ranks[0]["depths"]
    assert len(set(depths)) > 1  # dropout really varied the depth
    assert revived > 0  # dead-code revival took part
    for key, value in single.state_dict().items():
        if key.endswith("_extra_state"):
            continue
        torch.testing.assert_close(ranks[0]["state"][key], value, atol=1e-5, rtol=1e-5)


def per_item_worker(rank, world, port, out_dir):
    torch.manual_seed(0)
    quantizer = GroupedResidualVQ(
        **OPTIONS | dict(quantize_dropout_per_item=True, quantize_dropout_prob=0.5)
    ).train()
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        kept = []
        for x in batches():
            _, idx, _ = quantizer(x.chunk(world)[rank])
            kept.append((idx[0, :, 0] >= 0).sum(-1).tolist())  # levels kept per item
        state = {k: v for k, v in quantizer.state_dict().items() if not k.endswith("_extra_state")}
        torch.save({"state": state, "kept": kept}, os.path.join(out_dir, f"item{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_per_item_dropout_under_ddp_keeps_ranks_in_step(tmp_path):
    """Each rank's items draw their own depths, so the deepest item differs between ranks; the
    level-by-level all-reduce must still line up (it used to abort gloo) and the codebooks
    must stay identical."""
    mp.spawn(per_item_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"item{r}.pt", weights_only=True) for r in range(2)]
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
    assert ranks[0]["kept"] != ranks[1]["kept"]  # ranks really drew different depths
    assert any(max(a) != max(b) for a, b in zip(ranks[0]["kept"], ranks[1]["kept"]))
