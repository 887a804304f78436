"""The quantizer on real speech features: log-mel frames of FSDD recordings."""

import soundfile as sf
import torch
import torchaudio

from codec.quantize import ResidualVQ


def speech_mel_frames(root, files=120) -> torch.Tensor:
    """(frames, 64) log-mel frames of the first `files` recordings (sorted), 8 kHz."""
    mel = torchaudio.transforms.MelSpectrogram(8000, n_fft=256, hop_length=80, n_mels=64)
    frames = []
    for path in sorted(root.glob("*.wav"))[:files]:
        wav, rate = sf.read(path, dtype="float32")
        assert rate == 8000
        spec = mel(torch.from_numpy(wav)).clamp(min=1e-5).log()  # (64, t)
        frames.append(spec.T)
    x = torch.cat(frames)
    return (x - x.mean(0)) / x.std(0)


def train(x, steps=25, **kw):
    rvq = ResidualVQ(dim=64, num_quantizers=6, codebook_size=64, decay=0.8, **kw).train()
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = x[torch.randint(0, len(x), (32, 64), generator=g)]  # (32, 64 frames, 64 mels)
        rvq(batch)
    usage = rvq.telemetry()["usage"]
    return rvq.eval(), usage


def test_error_falls_with_levels_and_usage_stays_high_on_speech(fsdd_root):
    x = speech_mel_frames(fsdd_root)
    assert x.shape[0] > 5000
    held_out = x[-2000:].unsqueeze(0)
    train_frames = x[:-2000]

    rvq, usage = train(train_frames, kmeans_init=True, threshold_ema_dead_code=2)
    _, idx, _ = rvq(held_out)
    errors = [
        (rvq.get_output_from_indices(idx[..., :levels]) - held_out).pow(2).mean().item()
        for levels in range(0 + 1, 7)
    ]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.5 * errors[0]
    assert usage.min() > 0.9, usage

    # without k-means init and dead-code revival, many codes are never used
    _, plain_usage = train(train_frames)
    assert plain_usage.mean() < usage.mean() - 0.2, (plain_usage, usage)
