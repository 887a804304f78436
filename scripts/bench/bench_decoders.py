"""The frame-rate (ConvNeXt + inverse STFT) decoder beside the SEANet decoder at the same frame
rate and latent size, and the shipped speech16k model's streaming decode:

    python scripts/bench/bench_decoders.py [--quick]

On one thread: a training step of the decoder alone (forward + backward, 8 x 0.5 s), offline
decoding of 10 s, and streaming decoding frame by frame (one 20 ms frame per call), as medians
and real-time factors; the shipped model streams through `Codec.streaming()` (its layers).
Both decoders have random weights, are causal, and have the widths of the speech16k CPU
configurations (configs/experiment/speech16k_cpu{,_istft}.yaml).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from omegaconf import OmegaConf
from timing import interleaved, streaming_real_time

from codec.models import Codec, CodecConfig
from codec.models.names import PRETRAINED
from codec.nn import cpu_isa, for_cpu_inference
from codec.train import compose_config

CAUSAL = ["model.encoder.causal=true", "model.decoder.causal=true"]
EXPERIMENTS = {"SEANet": "speech16k_cpu", "ConvNeXt + iSTFT": "speech16k_cpu_istft"}


def model_of(experiment: str) -> Codec:
    cfg = compose_config([f"experiment={experiment}", "data.root=.", *CAUSAL])
    torch.manual_seed(0)
    return Codec(CodecConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True)))


def train_step(decoder: torch.nn.Module, dimension: int):
    latents = torch.randn(8, dimension, 25)

    def step():
        decoder.zero_grad(set_to_none=True)
        decoder(latents).square().mean().backward()

    return step


def streaming_rtf(model: Codec, seconds: float) -> float:
    frames = int(seconds * model.frame_rate)
    torch.manual_seed(0)
    codes = torch.randint(0, model.codebook_size, (1, model.groups, model.levels, frames))
    return streaming_real_time(model, codes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs, seconds = (3, 5.0) if args.quick else (7, 10.0)
    print(f"CPU kernels: {cpu_isa()}; 1 thread; medians of {runs} runs")

    models = {name: model_of(experiment) for name, experiment in EXPERIMENTS.items()}
    steps = {name: train_step(m.decoder.train(), m.config.dimension) for name, m in models.items()}
    step_times = interleaved(steps, runs)
    for model in models.values():
        model.eval().requires_grad_(False)
        for_cpu_inference(model)
    latents = {n: torch.randn(1, m.config.dimension, int(seconds * 50)) for n, m in models.items()}
    with torch.inference_mode():
        decode_times = interleaved(
            {n: (lambda m=m, z=latents[n]: m.decoder(z)) for n, m in models.items()}, runs
        )
    print("| decoder | parameters | train step (8 x 0.5 s) | decode 10 s | streaming, per frame |")
    print("|---|---|---|---|---|")
    for name, model in models.items():
        params = sum(p.numel() for p in model.decoder.parameters()) / 1e6
        rtf = streaming_rtf(model, seconds)
        print(
            f"| {name} | {params:.2f} M | {1000 * step_times[name]:.0f} ms | "
            f"{1000 * decode_times[name]:.0f} ms ({seconds / decode_times[name]:.0f}x real time)"
            f" | {rtf:.1f}x real time |"
        )
    ratio = step_times["SEANet"] / step_times["ConvNeXt + iSTFT"]
    print(
        f"ConvNeXt + iSTFT against SEANet: train step {ratio:.2f}x, decode "
        f"{decode_times['SEANet'] / decode_times['ConvNeXt + iSTFT']:.2f}x"
    )

    shipped = PRETRAINED / "speech16k"
    if (shipped / "config.json").is_file():
        model = Codec.from_pretrained(shipped)
        rtf = statistics.median(streaming_rtf(model, seconds) for _ in range(runs))
        print(
            f"shipped speech16k, streaming decode frame by frame through its layers (1 thread, "
            f"{cpu_isa()}, median of {runs}): {rtf:.1f}x real time ({1000 / 50 / rtf:.2f} ms "
            "per 20 ms frame); ONNX Runtime's step graphs: scripts/bench/bench_runtime.py"
        )


if __name__ == "__main__":
    main()
