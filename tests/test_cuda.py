"""The codec on a CUDA GPU against the CPU: a few training steps (float32 and bf16 autocast), the
codes and audio of encode/decode, the grouped residual quantizer, and streaming of a causal
frame-rate model. Marked `cuda` (`pytest -m cuda`) and skipped where torch sees no CUDA device;
scripts/gpu_oneshot.sh runs them on the GPU machine. CODEC_TEST_DEVICE=cpu runs them with the
CPU in the GPU's place, a dry run of the tests themselves where there is no GPU.

Tolerances. TF32 is off in these tests (cuDNN convolutions use it by default), so activations on
the GPU differ from the CPU's by float32 rounding alone, and the quantizer searches in float32 on
both: codes must be exactly equal. A code could only differ where two codes are within about
1e-6 of a tie in distance, which the seeded inputs here do not produce. Latents, audio and
codebooks agree to atol 1e-4 (reductions run in another order on the GPU; the inverse STFT is
cuFFT's there). Training is not compared step by step with the CPU (Adam's first steps amplify
rounding): it must run without a skipped step, log finite losses and validation scores, and
change the weights.
"""

import copy
import math
import os
from pathlib import Path

import pytest
import torch
import yaml

from codec.models import Codec
from codec.models.config import CodecConfig
from codec.quantize import GroupedResidualVQ
from codec.train import main
from codec.train.synthetic import make_demo_clip

DEVICE = os.environ.get("CODEC_TEST_DEVICE", "cuda")
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"
    ),
]

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "model"
TF32_SWITCHES = (torch.backends.cudnn.conv, torch.backends.cudnn.rnn, torch.backends.cuda.matmul)


@pytest.fixture(autouse=True)
def _no_tf32():
    """float32 convolutions, LSTMs and matrix products in IEEE float32, restored afterwards."""
    before = [switch.fp32_precision for switch in TF32_SWITCHES]
    for switch in TF32_SWITCHES:
        switch.fp32_precision = "ieee"
    yield
    for switch, value in zip(TF32_SWITCHES, before):
        switch.fp32_precision = value


def speech(batch: int, seconds: float, rate: int = 16000) -> torch.Tensor:
    """(batch, 1, t): the demo corpus's seeded speech-like clips (every third clip is speech)."""
    clips = [make_demo_clip(3 * i, seconds, rate) for i in range(batch)]
    return torch.stack([torch.from_numpy(c) for c in clips])[:, None]


def initialised(model: Codec, wav: torch.Tensor) -> Codec:
    """`model` after one training-mode pass on the CPU, which k-means-initialises its codebooks
    (before that every code is the same and any search is a tie), then in eval mode."""
    model.train()
    with torch.no_grad():
        model(wav)
    return model.eval()


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_a_small_codec_trains_on_cuda(precision, tmp_path, metrics_records, tiny_train_overrides):
    """A few steps of the tiny training run on the GPU, the MS-STFT discriminator active from
    the first step, then validation and the exported model."""
    run = tmp_path / "run"
    main(
        [
            *tiny_train_overrides,
            f"trainer.device={DEVICE}",
            f"trainer.precision={precision}",
            "trainer.steps=3",
            "trainer.log_every=1",
            "trainer.valid_every=3",
            "trainer.checkpoint_every=3",
            "trainer.tensorboard=false",
            "discriminator.start_step=0",
            f"run_dir={run}",
        ]
    )
    records = metrics_records(run)
    assert not [r for r in records if r.get("event") == "skipped_step"]
    steps = [r for r in records if "mel" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for record in steps:
        for key in ("mel", "l1", "adv", "feat", "commitment", "d_loss"):
            assert math.isfinite(record[key]), (key, record)
    (valid,) = [r for r in records if r.get("event") == "valid"]
    scores = [v for k, v in valid.items() if k.startswith("valid_")]
    assert scores and all(math.isfinite(v) for v in scores)

    trained = Codec.from_pretrained(run / "model", inference=False)
    floats = [t for t in trained.state_dict().values() if t.is_floating_point()]
    assert all(t.dtype == torch.float32 for t in floats)
    torch.manual_seed(0)  # the run's seed: the trainer builds the model first after seeding
    fresh = Codec(trained.config)
    changed = [
        name
        for name, tensor in trained.state_dict().items()
        if tensor.is_floating_point() and not torch.equal(tensor, fresh.state_dict()[name])
    ]
    assert any(name.startswith("encoder.") for name in changed)
    assert any(name.startswith("decoder.") for name in changed)
    assert any(name.startswith("quantizer.") for name in changed)


@pytest.mark.parametrize("levels", [None, 2])
def test_encode_and_decode_on_cuda_give_the_cpu_codes_and_audio(levels, tiny_codec):
    wav = speech(2, 0.5)
    model = initialised(tiny_codec(), wav)
    on_gpu = copy.deepcopy(model).to(DEVICE)

    codes = model.encode(wav, levels=levels)
    gpu_codes = on_gpu.encode(wav.to(DEVICE), levels=levels)
    assert gpu_codes.device.type == DEVICE and gpu_codes.dtype == torch.int64
    assert torch.equal(gpu_codes.cpu(), codes)

    audio = model.decode(codes)
    gpu_audio = on_gpu.decode(codes.to(DEVICE))
    torch.testing.assert_close(gpu_audio.cpu(), audio, atol=1e-4, rtol=0)


def test_the_grouped_residual_quantizer_on_cuda_matches_the_cpu():
    """k-means initialisation, training steps (EMA updates, structured dropout with a fixed
    seed, dead-code revival) and eval-mode search, from the same state on both devices."""
    torch.manual_seed(0)
    cpu = GroupedResidualVQ(
        dim=32,
        groups=2,
        num_quantizers=4,
        codebook_size=16,
        kmeans_init=True,
        kmeans_iters=3,
        decay=0.9,
        threshold_ema_dead_code=2,
        quantize_dropout=True,
    )
    gpu = copy.deepcopy(cpu).to(DEVICE)
    for step in range(3):
        x = torch.randn(4, 50, 32)
        out, idx, losses = cpu(x, rand_quantize_dropout_fixed_seed=step)
        gpu_out, gpu_idx, gpu_losses = gpu(x.to(DEVICE), rand_quantize_dropout_fixed_seed=step)
        assert torch.equal(gpu_idx.cpu(), idx), step
        torch.testing.assert_close(gpu_out.cpu(), out, atol=1e-4, rtol=0)
        torch.testing.assert_close(gpu_losses.cpu(), losses, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(gpu.codebooks.cpu(), cpu.codebooks, atol=1e-4, rtol=0)

    cpu.eval(), gpu.eval()
    x = torch.randn(3, 40, 32)
    out, idx, _ = cpu(x)
    gpu_out, gpu_idx, _ = gpu(x.to(DEVICE))
    assert torch.equal(gpu_idx.cpu(), idx)
    torch.testing.assert_close(gpu_out.cpu(), out, atol=1e-4, rtol=0)
    torch.testing.assert_close(gpu.get_output_from_indices(gpu_idx), gpu_out)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):  # the quantizer stays in float32
        autocast_out, autocast_idx, _ = gpu(x.to(DEVICE))
    assert torch.equal(autocast_idx, gpu_idx) and autocast_out.dtype == torch.float32


def causal_frame_rate_codec() -> Codec:
    """The shipped encoder=stft / decoder=istft configs, causal, at a test's size."""
    parts = {
        kind: yaml.safe_load((CONFIGS / kind / f"{name}.yaml").read_text())
        for kind, name in [("encoder", "stft"), ("decoder", "istft")]
    }
    for part in parts.values():
        part |= {"n_filters": 32, "hidden": 64, "n_blocks": 2, "causal": True}
    quantizer = {"name": "grvq", "groups": 2, "levels": 3, "codebook_size": 64, "kmeans_iters": 5}
    torch.manual_seed(0)
    return Codec(CodecConfig.from_dict({"dimension": 32, "quantizer": quantizer, **parts}))


def test_a_causal_frame_rate_model_streams_its_offline_output_on_cuda():
    wav = speech(2, 0.6)  # 30 frames of 320 samples
    model = initialised(causal_frame_rate_codec(), wav)
    assert model.causal and model.hop_length == 320
    on_gpu = copy.deepcopy(model).to(DEVICE)
    wav = wav.to(DEVICE)

    codes = on_gpu.encode(wav)
    assert torch.equal(codes.cpu(), model.encode(wav.cpu()))
    offline = on_gpu.decode(codes)
    torch.testing.assert_close(offline.cpu(), model.decode(codes.cpu()), atol=1e-4, rtol=0)

    frames = [3, 1, 6, 11, 9]  # uneven chunks, 30 frames in all
    with on_gpu.streaming():
        decoded = [on_gpu.decode(part) for part in codes.split(frames, -1)]
    torch.testing.assert_close(torch.cat(decoded, -1), offline, atol=1e-5, rtol=1e-5)
    with on_gpu.streaming():
        encoded = [on_gpu.encode(part) for part in wav.split([f * 320 for f in frames], -1)]
    assert torch.equal(torch.cat(encoded, -1), codes)
