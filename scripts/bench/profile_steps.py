"""Where a frame's time goes in ONNX Runtime's streaming steps: encode + decode one frame per
call, one thread, timed plain and then profiled by onnxruntime per operator type; and the
floors that reading the model's weights sets.

    python scripts/bench/profile_steps.py [--model speech16k] [--frames 50] [--rounds 15]

The lowered step graphs (as `codec export` writes them) are timed against the same graphs
exported without lowering, in alternating rounds (first, second, second, first), and the
median per-round ratio printed.

Every frame runs every layer and scores every code of every codebook, so it reads the
encoder's and decoder's weights and the codebooks once: the time to read that many bytes once
(a sum over a buffer of that size, 1 thread) is a floor under any fp32 step, whatever the
arithmetic (the step graphs hold more: the decoder's code table, of which a frame reads only
the codes it sums). Two floors are printed: cache-warm, and from memory (after reading other
memory), which is where the weights come from once a frame's working set is larger than the
share of the last-level cache the process keeps. The profile's per-operator times include
onnxruntime's profiling overhead (its total is printed beside the plain time).
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def weight_bytes(folder: Path, names) -> int:
    import onnx
    from onnx import numpy_helper

    total = 0
    for name in names:
        graph = onnx.load(str(folder / f"{name}.onnx")).graph
        total += sum(numpy_helper.to_array(t).nbytes for t in graph.initializer)
    return total


def frame_bytes(model) -> int:
    """fp32 bytes a frame reads at least: the encoder's and decoder's parameters (weight norm
    folded) and every codebook's codes."""
    parameters = [*model.encoder.parameters(), *model.decoder.parameters()]
    return 4 * (sum(p.numel() for p in parameters) + model.quantizer.codebooks.numel())


def read_seconds(nbytes: int, runs: int = 30, cold: bool = False) -> float:
    """Median time to read `nbytes` of fp32 once (a sum), 1 thread: after a warm-up, from the
    last-level cache where it fits there; `cold`, after reading 128 MiB of other memory each
    time, so from memory."""
    buffer = torch.ones(max(1, nbytes // 4))
    other = torch.ones(32 << 20) if cold else None
    buffer.sum()
    times = []
    for _ in range(runs):
        if other is not None:
            other.sum()
        start = time.perf_counter()
        buffer.sum()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_frames(graphs, audio: np.ndarray, hop: int) -> float:
    """Seconds per frame of encode + decode, one hop per call."""
    stream = graphs.stream(1)
    frames = audio.shape[-1] // hop
    start = time.perf_counter()
    for k in range(frames):
        stream.decode(stream.encode(audio[..., k * hop : (k + 1) * hop]))
    return (time.perf_counter() - start) / frames


def paired(first, second, audio: np.ndarray, hop: int, rounds: int) -> tuple:
    """Seconds per frame of `first` and `second` (medians) and the median per-round ratio
    second / first, each round timing them in the order first, second, second, first, so
    that a load that drifts during the round weighs on both alike."""
    times, ratios = ([], []), []
    for _ in range(rounds):
        a1, b1, b2, a2 = (run_frames(g, audio, hop) for g in (first, second, second, first))
        times[0].extend((a1, a2))
        times[1].extend((b1, b2))
        ratios.append((b1 + b2) / (a1 + a2))
    return statistics.median(times[0]), statistics.median(times[1]), statistics.median(ratios)


def profiled(graphs, folder: Path, audio: np.ndarray, hop: int, prefix: str) -> dict:
    """{graph: Counter(op type -> microseconds per frame)} from onnxruntime's profiler."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.enable_profiling, options.profile_file_prefix = True, prefix
    for name in ("encoder_step", "decoder_step"):
        graphs.sessions[name] = ort.InferenceSession(
            str(folder / f"{name}.onnx"), options, providers=["CPUExecutionProvider"]
        )
    run_frames(graphs, audio, hop)
    frames = audio.shape[-1] // hop
    found = {}
    for name in ("encoder_step", "decoder_step"):
        events = json.loads(Path(graphs.sessions[name].end_profiling()).read_text())
        per_op = collections.Counter()
        for event in events:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                per_op[event["args"]["op_name"]] += event["dur"] / frames
        found[name] = per_op
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="speech16k", help="a short name or a model folder")
    parser.add_argument("--frames", type=int, default=50, help="frames a timed run codes")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--top", type=int, default=8, help="operator types shown per graph")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import onnxruntime

    from codec.models import Codec
    from codec.models.folder import ModelFormatError
    from codec.models.names import resolve_model
    from codec.runtime.export import export_model, prepared
    from codec.runtime.onnx import OnnxGraphs

    try:
        model = Codec.from_pretrained(resolve_model(args.model), inference=False)
    except (FileNotFoundError, ModelFormatError) as err:
        raise SystemExit(f"profile_steps: {err}") from None
    if not model.causal or model.segmentation is not None:
        raise SystemExit(f"{args.model}: no streaming steps (not a causal, unsegmented model)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_model(model, Path(tmp) / "graphs")
        graphs = OnnxGraphs.load(folder, threads=1)
        as_exported = OnnxGraphs.load(export_model(model, Path(tmp) / "as", lower=False), 1)
        hop = graphs.hop_length
        rng = np.random.default_rng(0)
        audio = (0.1 * rng.standard_normal((1, graphs.channels, hop * args.frames))).astype(
            np.float32
        )
        run_frames(graphs, audio, hop)  # warm-up
        run_frames(as_exported, audio, hop)
        plain, unlowered, ratio = paired(graphs, as_exported, audio, hop, args.rounds)
        graph_bytes = weight_bytes(folder, ("encoder_step", "decoder_step"))
        nbytes = frame_bytes(prepared(model))  # weight norm folded, as a frame reads them
        floor, cold = read_seconds(nbytes), read_seconds(nbytes, cold=True)
        profile = profiled(graphs, folder, audio, hop, str(Path(tmp) / "profile"))
    frame_ms = 1000 * hop / graphs.sample_rate
    print(
        f"{graphs.model_id}: encode + decode one {frame_ms:.1f} ms frame per call, 1 thread, "
        f"onnxruntime {onnxruntime.__version__}, medians of {args.rounds} rounds of 2 x 2 x "
        f"{args.frames} frames: {plain * 1e3:.3f} ms a frame ({frame_ms / (plain * 1e3):.1f}x "
        f"real time); the step graphs without lowering (codec.runtime.lowering) "
        f"{unlowered * 1e3:.3f} ms, {ratio:.2f}x the lowered ones' time within a round"
    )
    print(
        f"weights and codebooks a frame reads: {nbytes / 2**20:.1f} MiB (the step graphs hold "
        f"{graph_bytes / 2**20:.1f} MiB), read once in {floor * 1e3:.3f} ms from the cache "
        f"({nbytes / floor / 1e9:.1f} GB/s) and in {cold * 1e3:.3f} ms from memory "
        f"({nbytes / cold / 1e9:.1f} GB/s): the floors under an fp32 step on this machine"
    )
    for name, per_op in profile.items():
        total = sum(per_op.values())
        print(f"{name}, profiled: {total:.0f} us a frame in its nodes")
        for op, us in per_op.most_common(args.top):
            print(f"  {op:20s} {us:8.1f} us  ({us / total:5.1%})")


if __name__ == "__main__":
    main()
