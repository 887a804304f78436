"""Training losses: reconstruction (multi-scale mel, mel band levels, multi-resolution STFT,
waveform, STOI), adversarial (hinge, least squares), feature matching, and the gradient
balancer.

All reconstruction losses take (estimate, target) of shape (batch, channels, samples).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from codec.quantize import distributed as ddp
from codec.sdr import si_sdr
from codec.stoi import stoi


def _spectrogram_window(module: nn.Module, n_fft: int) -> torch.Tensor:
    return getattr(module, f"window_{n_fft}")


class MelLoss(nn.Module):
    """Multi-scale mel distance: for each FFT size, the L1 distance of log mel spectrograms
    (log10, clamped at `eps`) plus `linear_weight` times the L1 distance of the mel magnitudes,
    averaged over scales. Defaults: windows 2^6..2^11 with 64 mels (EnCodec); the number of mels
    is capped at n_fft / 4 so small windows keep non-empty filters. Used as the training loss
    and as the evaluation metric "mel distance"."""

    def __init__(
        self,
        sample_rate: int,
        n_ffts: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048),
        n_mels: int = 64,
        linear_weight: float = 0.0,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.eps, self.linear_weight = eps, linear_weight
        self.mels = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate,
                n_fft=n_fft,
                win_length=n_fft,
                hop_length=n_fft // 4,
                n_mels=min(n_mels, n_fft // 4),
                power=1.0,
                center=True,
                norm="slaney",
                mel_scale="slaney",
            )
            for n_fft in n_ffts
        )

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros(())
        for mel in self.mels:
            a, b = mel(estimate.float()), mel(target.float())
            total = (
                total + (a.clamp(min=self.eps).log10() - b.clamp(min=self.eps).log10()).abs().mean()
            )
            if self.linear_weight:
                total = total + self.linear_weight * (a - b).abs().mean()
        return total / len(self.mels)


class MelLevelLoss(nn.Module):
    """L1 distance of each item's long-term mel band levels: the mel power spectrogram
    (b c mels frames) averaged over frames, in log10, so it sees the spectral balance of a
    whole segment (a tilt, a band played too quiet) and none of its frame-by-frame detail.
    Waveform terms (SI-SDR, STOI) let a decoder play the bands it is unsure of too quiet; the
    frame-wise mel distance pays for that only in proportion to the frames. `f_max` (Hz) keeps
    the bands below it (all up to Nyquist when None)."""

    def __init__(
        self,
        sample_rate: int,
        n_fft: int = 1024,
        n_mels: int = 64,
        f_max: float | None = None,
        eps: float = 1e-10,
    ):
        super().__init__()
        self.eps = eps
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate,
            n_fft=n_fft,
            hop_length=n_fft // 4,
            n_mels=n_mels,
            f_max=f_max,
            power=2.0,
            norm="slaney",
            mel_scale="slaney",
        )

    def levels(self, wav: torch.Tensor) -> torch.Tensor:
        """(b c t) -> (b c mels): log10 of the mean mel power over frames."""
        return self.mel(wav.float()).mean(-1).clamp(min=self.eps).log10()

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (self.levels(estimate) - self.levels(target)).abs().mean()


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence plus log-magnitude L1 over several FFT sizes (Parallel WaveGAN),
    averaged over resolutions."""

    def __init__(self, n_ffts: tuple[int, ...] = (512, 1024, 2048), eps: float = 1e-7):
        super().__init__()
        self.n_ffts, self.eps = tuple(n_ffts), eps
        for n_fft in self.n_ffts:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def magnitude(self, wav: torch.Tensor, n_fft: int) -> torch.Tensor:
        flat = wav.float().reshape(-1, wav.shape[-1])
        spec = torch.stft(
            flat, n_fft, n_fft // 4, n_fft, _spectrogram_window(self, n_fft), return_complex=True
        )
        return spec.abs().clamp(min=self.eps)

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros(())
        for n_fft in self.n_ffts:
            a, b = self.magnitude(estimate, n_fft), self.magnitude(target, n_fft)
            convergence = torch.linalg.vector_norm(b - a) / torch.linalg.vector_norm(b).clamp(
                min=self.eps
            )
            total = total + convergence + (a.log() - b.log()).abs().mean()
        return total / len(self.n_ffts)


def waveform_l1(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (estimate - target).abs().mean()


def negative_si_sdr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Minus the scale-invariant SDR in dB (codec.sdr.si_sdr), averaged over items: a
    waveform term that, unlike the spectral losses, asks for the target's phase."""
    return -si_sdr(estimate, target).mean()


def negative_stoi(estimate: torch.Tensor, target: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Minus STOI (codec.stoi), averaged over the items with at least 384 ms of non-silent
    speech (zero, with a zero gradient, when none has): an intelligibility term on band
    envelopes over 384 ms, which no frame-wise spectral loss sees. A non-finite estimate gives
    a non-finite loss, as in the other terms."""
    scores = stoi(estimate, target, sample_rate)
    broken = ~torch.isfinite(estimate.reshape(estimate.shape[0], -1)).all(-1)
    valid = torch.isfinite(scores) | broken
    if not valid.any():
        return estimate.sum() * 0
    return -scores[valid].mean().float()


# -- adversarial ----------------------------------------------------------------------------


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor], kind: str = "hinge"):
    """Mean over sub-discriminators; `fake` logits should come from detached audio."""
    total = real[0].new_zeros(())
    for r, f in zip(real, fake):
        if kind == "hinge":
            total = total + F.relu(1 - r).mean() + F.relu(1 + f).mean()
        elif kind == "lsgan":
            total = total + (r - 1).pow(2).mean() + f.pow(2).mean()
        else:
            raise ValueError(f"adversarial loss must be 'hinge' or 'lsgan', got {kind!r}")
    return total / len(real)


def generator_loss(fake: list[torch.Tensor], kind: str = "hinge") -> torch.Tensor:
    total = fake[0].new_zeros(())
    for f in fake:
        if kind == "hinge":
            total = total + F.relu(1 - f).mean()
        elif kind == "lsgan":
            total = total + (f - 1).pow(2).mean()
        else:
            raise ValueError(f"adversarial loss must be 'hinge' or 'lsgan', got {kind!r}")
    return total / len(fake)


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]):
    """L1 between discriminator activations on real and generated audio, each layer's distance
    divided by the mean magnitude of its real activations (EnCodec), averaged over layers."""
    total, count = None, 0
    for real_layers, fake_layers in zip(real, fake):
        for r, f in zip(real_layers, fake_layers):
            r = r.detach()
            term = (f - r).abs().mean() / r.abs().mean().clamp(min=1e-8)
            total = term if total is None else total + term
            count += 1
    if total is None:
        raise ValueError("no discriminator features to match")
    return total / count


# -- the balancer ---------------------------------------------------------------------------


class Balancer:
    """EnCodec's gradient balancer: each loss's gradient with respect to the generated audio is
    rescaled so that its share of the total gradient is its weight's share, whatever the loss's
    natural scale. Gradient norms are tracked as an EMA (`decay`), averaged over batch items and
    over DDP ranks, and the combined gradient has norm `total_norm` (times the total weight ratio).

        balancer = Balancer({"mel": 2, "adv": 4, "feat": 4, "l1": 0.1})
        grad, norms = balancer.combine({"mel": mel, "adv": adv, ...}, audio)  # audio: (b, c, t)
        torch.autograd.backward([audio, commitment], [grad, torch.ones_like(commitment)])

    One backward call for everything keeps DDP's gradient reduction to one per step. Losses that
    do not depend on the audio (e.g. commitment) are the caller's extra roots.

    Each loss's EMA is bias-corrected by its own count of steps, so a loss that joins late (the
    adversarial terms from `discriminator.start_step`) is scaled by its own gradient norm, not
    by a near-empty average that would amplify it up to 1 / (1 - decay) times.
    """

    def __init__(
        self,
        weights: dict[str, float],
        decay: float = 0.999,
        total_norm: float = 1.0,
        eps: float = 1e-12,
    ):
        if not weights or any(w < 0 for w in weights.values()):
            raise ValueError("balancer weights must be non-negative and not empty")
        self.weights, self.decay, self.total_norm, self.eps = dict(weights), decay, total_norm, eps
        self.norm_ema: dict[str, float] = {}
        self.ema_weight: dict[str, float] = {}  # bias correction per loss, as in Adam

    def state_dict(self) -> dict:
        return {"norm_ema": dict(self.norm_ema), "ema_weight": dict(self.ema_weight)}

    def load_state_dict(self, state: dict) -> None:
        self.norm_ema = {k: float(v) for k, v in state["norm_ema"].items()}
        weight = state["ema_weight"]
        if not isinstance(weight, dict):  # checkpoints of one shared count: every loss had it
            weight = dict.fromkeys(self.norm_ema, weight)
        self.ema_weight = {k: float(v) for k, v in weight.items()}

    def combine(
        self,
        losses: dict[str, torch.Tensor],
        audio: torch.Tensor,
        gains: dict[str, float] | None = None,
    ):
        """The balanced gradient of `losses` with respect to `audio` (same shape), and each
        loss's own gradient norm (for logging). `gains` (default 1) multiply some losses'
        weights for this step, e.g. to ramp the adversarial terms in."""
        gains = gains or {}
        unknown = set(losses) - set(self.weights)
        if unknown:
            raise ValueError(f"no balancer weight for: {', '.join(sorted(unknown))}")
        grads, norms = {}, {}
        for name, loss in losses.items():
            (grad,) = torch.autograd.grad(loss, audio, retain_graph=True)
            grads[name] = grad
            norms[name] = grad.reshape(grad.shape[0], -1).norm(dim=1).mean()
        stacked = torch.stack([norms[name] for name in losses])
        if ddp.is_distributed():
            ddp.all_reduce_sum_(stacked)
            stacked /= ddp.world()[1]
        values = stacked.tolist()
        for name, value in zip(losses, values):
            self.norm_ema[name] = self.decay * self.norm_ema.get(name, 0.0) + value
            self.ema_weight[name] = self.decay * self.ema_weight.get(name, 0.0) + 1.0
        weights = {name: self.weights[name] * gains.get(name, 1.0) for name in losses}
        total_weight = sum(weights.values())
        combined = torch.zeros_like(audio)
        for name in losses:
            ema = self.norm_ema[name] / self.ema_weight[name]
            scale = self.total_norm * weights[name] / total_weight / (ema + self.eps)
            combined.add_(grads[name], alpha=scale)
        return combined, dict(zip(losses, values))
