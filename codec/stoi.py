"""Short-time objective intelligibility (STOI; Taal et al., IEEE TASLP 2011) in torch, so that
the score `codec eval` reports through pystoi can also be a training loss: differentiable in the
estimate, equal to pystoi's value up to the resampler (tests/test_stoi.py).

The steps are the reference's: resample to 10 kHz; drop the frames (256 samples, hop 128, Hann)
in which the clean signal is more than 40 dB below its loudest frame, from both signals, and
overlap-add the rest; 15 one-third-octave band envelopes from 150 Hz (512-point FFT); over every
run of 30 frames (384 ms), scale the estimate's envelope to the clean one's energy, clip it at
15 dB above the clean envelope, and correlate the two; average over bands and runs.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
import torchaudio

RATE = 10_000
FRAME = 256
HOP = FRAME // 2
N_FFT = 512
BANDS = 15
LOWEST_CENTRE_HZ = 150.0
SEGMENT = 30  # frames per correlation: 384 ms
CLIP_DB = 15.0
DYNAMIC_RANGE_DB = 40.0
SILENCE_DB = -100.0  # a clean signal whose loudest frame is below this holds no speech
_EPS = torch.finfo(torch.float64).eps


def third_octave_bands(
    rate: int = RATE, n_fft: int = N_FFT, bands: int = BANDS, lowest: float = LOWEST_CENTRE_HZ
) -> torch.Tensor:
    """(bands, n_fft // 2 + 1) 0/1 matrix summing FFT bins into one-third-octave bands; each
    band's edges are the bins nearest to its nominal edges, the upper edge excluded."""
    freqs = torch.linspace(0, rate, n_fft + 1, dtype=torch.float64)[: n_fft // 2 + 1]
    k = torch.arange(bands, dtype=torch.float64)
    low = lowest * 2.0 ** ((2 * k - 1) / 6)
    high = lowest * 2.0 ** ((2 * k + 1) / 6)
    lo_bin = (freqs[None] - low[:, None]).square().argmin(dim=1)
    hi_bin = (freqs[None] - high[:, None]).square().argmin(dim=1)
    bins = torch.arange(len(freqs))
    return ((bins[None] >= lo_bin[:, None]) & (bins[None] < hi_bin[:, None])).double()


@functools.cache
def _constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The analysis window (MATLAB's hanning(FRAME)) and the band matrix, made once per device:
    the loss calls `stoi` every training step. Read-only."""
    window = torch.hann_window(FRAME + 2, periodic=False, dtype=torch.float64)[1:-1]
    return window.to(device), third_octave_bands().to(device)


def _frames(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """(t,) -> (n, FRAME) windowed frames starting at 0, HOP, ... below t - FRAME."""
    count = max(0, math.ceil((x.shape[-1] - FRAME) / HOP))
    if count == 0:
        return x.new_zeros(0, FRAME)
    return x.unfold(0, FRAME, HOP)[:count] * window


def _overlap_add(frames: torch.Tensor) -> torch.Tensor:
    """(n, FRAME) -> ((n - 1) * HOP + FRAME,)"""
    length = (frames.shape[0] - 1) * HOP + FRAME
    folded = F.fold(frames.T[None], (1, length), kernel_size=(1, FRAME), stride=(1, HOP))
    return folded.reshape(length)


def _band_envelopes(x: torch.Tensor, window: torch.Tensor, bands: torch.Tensor) -> torch.Tensor:
    """(t,) -> (bands, frames): the magnitude in each one-third-octave band."""
    power = torch.fft.rfft(_frames(x, window), n=N_FFT).abs().square()
    return (bands @ power.T + 1e-20).sqrt()  # the offset keeps the gradient of sqrt finite


def _item_stoi(x: torch.Tensor, y: torch.Tensor, window, bands) -> torch.Tensor:
    """clean x, estimate y: (t,) at 10 kHz -> () STOI; NaN when x is digital silence or when,
    after the silent frames are dropped, fewer than SEGMENT frames remain (pystoi warns and
    returns 1e-5 there)."""
    x_frames, y_frames = _frames(x, window), _frames(y, window)
    if x_frames.shape[0] == 0:
        return x.new_tensor(float("nan"))
    energy = 20 * torch.log10(torch.linalg.vector_norm(x_frames, dim=1) + _EPS)
    if energy.max() < SILENCE_DB:  # pystoi scores digital silence 0; there is nothing to score
        return x.new_tensor(float("nan"))
    keep = energy > energy.max() - DYNAMIC_RANGE_DB
    x, y = _overlap_add(x_frames[keep]), _overlap_add(y_frames[keep])
    x_env, y_env = _band_envelopes(x, window, bands), _band_envelopes(y, window, bands)
    if x_env.shape[1] < SEGMENT:
        return x.new_tensor(float("nan"))
    # (bands, frames) -> (runs, bands, SEGMENT)
    x_seg = x_env.unfold(1, SEGMENT, 1).transpose(0, 1)
    y_seg = y_env.unfold(1, SEGMENT, 1).transpose(0, 1)

    def norm(t: torch.Tensor) -> torch.Tensor:
        return (t.square().sum(-1, keepdim=True) + 1e-30).sqrt()

    y_seg = y_seg * norm(x_seg) / (norm(y_seg) + _EPS)
    y_seg = torch.minimum(y_seg, x_seg * (1 + 10 ** (CLIP_DB / 20)))
    y_seg = y_seg - y_seg.mean(-1, keepdim=True)
    x_seg = x_seg - x_seg.mean(-1, keepdim=True)
    y_seg = y_seg / (norm(y_seg) + _EPS)
    x_seg = x_seg / (norm(x_seg) + _EPS)
    return (x_seg * y_seg).sum(-1).mean()


def stoi(estimate: torch.Tensor, target: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """STOI per item, in float64: (b, 1, t) or (b, t) -> (b,), higher is better; NaN for an
    item with under 384 ms of non-silent clean speech, or none. Differentiable in `estimate`."""
    est = estimate.reshape(estimate.shape[0], -1).double()
    ref = target.reshape(target.shape[0], -1).double().detach()
    if sample_rate != RATE:
        est = torchaudio.functional.resample(est, sample_rate, RATE)
        ref = torchaudio.functional.resample(ref, sample_rate, RATE)
    window, bands = _constants(est.device)
    return torch.stack([_item_stoi(r, e, window, bands) for r, e in zip(ref, est)])
