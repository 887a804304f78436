"""The CPU runtimes side by side, one thread: ONNX Runtime on exported graphs (codec.runtime)
against PyTorch's paths, whole files and frame by frame.

    python scripts/bench/bench_runtime.py [--runs 5] [--models speech16k,istft16k,encodec24,dac16]

Models: the shipped speech16k; istft16k, the frame-rate parts (STFT encoder, iSTFT decoder) of
configs/experiment/speech16k_cpu_istft.yaml with random weights; EnCodec 24 kHz and DAC 16 kHz,
the reference packages' models with random weights. Each codes the levels of its usual rate
(EnCodec 24 kHz: 8 of 32, 6 kbps; the others all), whole files and frames alike. For each,
10 s of audio, medians of `--runs` interleaved runs:
- whole-file encode and decode: PyTorch's plain layers, PyTorch with the hand-written CPU
  kernels (codec.nn.inference.for_cpu_inference, as `codec` loads a model; DAC's layers have
  none, so its two PyTorch cases run the same code), ONNX Runtime, and
  the reference package where there is one (encodec, descript-audio-codec) on the same weights;
- causal models: encode + decode frame by frame (one hop per call), ONNX Runtime's step graphs
  against PyTorch's layers streaming (codec.nn.streaming), plain and with the hand-written
  kernels, in ms per frame and real-time factor.
Each figure is printed as wall time and as this process's CPU time.
ONNX Runtime runs with intra_op_num_threads=1 and its default graph optimisations; its kernels
pick the CPU's widest ISA themselves (ATEN_CPU_CAPABILITY and ONEDNN_MAX_CPU_ISA hold only
PyTorch to AVX2), which the header says.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from profile_steps import run_frames
from reference_models import reference_module


def timed(cases: dict, runs: int) -> dict:
    """Median (wall, CPU) seconds of each callable, timed in turn within every round after
    one warm-up call. CPU time (this process's, all threads) leaves out the time other
    processes hold the core, so it is the figure to read on a loaded machine."""
    for fn in cases.values():
        fn()
    times = {name: ([], []) for name in cases}
    for _ in range(runs):
        for name, fn in cases.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name][0].append(time.perf_counter() - wall)
            times[name][1].append(time.process_time() - cpu)
    return {name: tuple(statistics.median(t) for t in pair) for name, pair in times.items()}


def _models(names: list[str], folder: Path) -> dict:
    from codec.models import Codec

    found = {}
    if "speech16k" in names:
        found["speech16k"] = (Codec.from_pretrained("speech16k"), None)
    if "encodec24" in names:
        import warnings

        from codec.models.encodec import import_encodec

        random_encodec = reference_module("encodec_reference").random_encodec

        warnings.filterwarnings("ignore", category=FutureWarning)
        theirs = random_encodec(24000, small=False, seed=0)
        theirs.set_target_bandwidth(6.0)
        th = folder / "encodec_24khz-random.th"
        torch.save(theirs.state_dict(), th)
        saved = import_encodec(th).save_pretrained(folder / "encodec24")
        found["encodec24"] = (Codec.from_pretrained(saved), theirs)
    if "istft16k" in names:  # the frame-rate parts at speech16k's size, random weights
        from bench_decoders import model_of

        model = model_of("speech16k_cpu_istft")
        found["istft16k"] = (Codec.from_pretrained(model.save_pretrained(folder / "istft")), None)
    if "dac16" in names:
        from codec.models.dac import DAC_16KHZ, import_dac

        helpers = reference_module("dac_reference")
        theirs = helpers.random_dac(DAC_16KHZ | {"sample_rate": 16000}, gain=0.8)
        pth = helpers.save_pth(theirs, folder / "dac_16khz-random.pth")
        saved = import_dac(pth).save_pretrained(folder / "dac16")
        found["dac16"] = (Codec.from_pretrained(saved), theirs)
    return found


def coded_levels(name: str, model) -> int:
    """The levels a model codes here: EnCodec 24 kHz at 6 kbps (8 of 32), the others all."""
    return 8 if name == "encodec24" else model.levels


def _plain(model):
    from codec.runtime.export import prepared

    return prepared(model)


def whole_files(name, model, theirs, graphs, runs: int) -> None:
    plain = _plain(model)
    wav = torch.randn(1, 1, model.sample_rate * 10) * 0.1
    levels = coded_levels(name, model)
    with torch.inference_mode():
        codes = model.encode(wav, levels=levels)
    audio, array = wav.numpy(), codes.numpy()
    cases = {
        "encode, PyTorch layers": lambda: plain.encode(wav, levels=levels),
        "encode, PyTorch hand-written": lambda: model.encode(wav, levels=levels),
        "encode, ONNX Runtime": lambda: graphs.encode(audio, levels),
        "decode, PyTorch layers": lambda: plain.decode(codes),
        "decode, PyTorch hand-written": lambda: model.decode(codes),
        "decode, ONNX Runtime": lambda: graphs.decode(array),
    }
    if name == "encodec24":
        frames = theirs.encode(wav)
        cases["encode, encodec package"] = lambda: theirs.encode(wav)
        cases["decode, encodec package"] = lambda: theirs.decode(frames)
    if name == "dac16":
        helpers = reference_module("dac_reference")
        reference_encode, reference_decode = helpers.reference_encode, helpers.reference_decode

        reference = reference_encode(theirs, wav)
        cases["encode, descript-audio-codec"] = lambda: reference_encode(theirs, wav)
        cases["decode, descript-audio-codec"] = lambda: reference_decode(theirs, reference)
    with torch.inference_mode():
        same = f"{float((graphs.encode(audio, levels) == array).mean()):.2%}"
        error = float(np.abs(graphs.decode(array) - model.decode(codes).numpy()).max())
        times = timed(cases, runs)
    print(
        f"\n{name}, 10 s, whole file (ONNX codes equal to PyTorch's: {same}; audio within "
        f"{error:.1e}); wall and CPU seconds:"
    )
    for case, (wall, cpu) in times.items():
        print(f"  {case:34s} {wall:7.3f} s  {cpu:7.3f} s CPU  ({10 / cpu:6.1f}x real time)")


def frame_by_frame(name, model, graphs, seconds: float, runs: int) -> None:
    from codec.nn import streaming

    plain = _plain(model)
    hop = model.hop_length
    wav = torch.randn(1, 1, int(model.sample_rate * seconds) // hop * hop) * 0.1
    frames = wav.shape[-1] // hop
    audio = wav.numpy()
    levels = coded_levels(name, model)

    def layers():
        with torch.inference_mode(), streaming(plain, 1):
            for k in range(frames):
                plain.decode(plain.encode(wav[..., k * hop : (k + 1) * hop], levels=levels))

    def hand_written():
        with torch.inference_mode(), streaming(model, 1):
            for k in range(frames):
                model.decode(model.encode(wav[..., k * hop : (k + 1) * hop], levels=levels))

    cases = {"PyTorch layers": layers, "PyTorch hand-written": hand_written}
    times = timed(cases | {"ONNX Runtime steps": lambda: run_frames(graphs, audio, hop)}, runs)
    frame_ms = 1000 * hop / model.sample_rate
    print(
        f"\n{name}, encode + decode frame by frame ({frame_ms:.1f} ms frames, {frames} frames); "
        "wall and CPU ms per frame:"
    )
    for case, (wall, cpu) in times.items():
        wall, cpu = 1000 * wall / frames, 1000 * cpu / frames
        print(f"  {case:34s} {wall:7.3f} ms {cpu:7.3f} ms CPU  ({frame_ms / cpu:6.1f}x real time)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", default="speech16k,istft16k,encodec24,dac16")
    parser.add_argument("--stream-seconds", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import onnxruntime

    from codec.nn import cpu_isa
    from codec.runtime.export import export_model
    from codec.runtime.onnx import OnnxGraphs

    print(
        f"PyTorch {torch.__version__} kernels {cpu_isa()}; onnxruntime {onnxruntime.__version__} "
        "(its own ISA choice: the widest the CPU has); 1 thread each"
    )
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for name, (model, theirs) in _models(args.models.split(","), folder).items():
            start = time.perf_counter()
            export_model(model, folder / f"{name}-onnx", levels=coded_levels(name, model))
            print(f"\n{name}: exported in {time.perf_counter() - start:.0f} s")
            graphs = OnnxGraphs.load(folder / f"{name}-onnx", threads=1)
            whole_files(name, model, theirs, graphs, args.runs)
            if model.causal:
                frame_by_frame(name, model, graphs, args.stream_seconds, args.runs)


if __name__ == "__main__":
    main()
