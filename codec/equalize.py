"""A fixed equaliser on a trained codec's output, folded into its decoder's last conv.

A codec trained on spectral losses can play whole frequency ranges quieter than its input (a
tilt). The tilt measured on training files is undone by a minimum-phase FIR filter (causal,
with the least delay a filter of that magnitude response can have), and the filter is folded
into the SEANet decoder's last conv: convolving a linear conv's kernel with the FIR gives one
conv that computes both, so the model keeps its layers, its streaming and its export, and only
`decoder.last_kernel_size` grows by `taps - 1`.

    gain = output_gain_db(model, files, bandwidth=6)
    model = fold_output_filter(model, minimum_phase_fir(gain, taps=64))
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from codec.metrics import active_spectra
from codec.models.codec import Codec
from codec.models.config import CodecConfig
from codec.nn.conv import Conv1d, set_weight

DESIGN_FFT = 8192  # the cepstrum's length: long enough that its aliasing is negligible


@torch.no_grad()
def output_gain_db(
    model: Codec, waves: Iterable[torch.Tensor], bandwidth: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gain per frequency bin that would bring `model`'s decoded audio to its input's
    level: input minus decoded level in dB over each file's speech frames (`active_spectra`),
    averaged over files (silent ones left out). `waves` yields (channels, t) at the model's
    rate.
    -> (gain_db (bins,), hz (bins,))"""
    total, count, hz = None, 0, None
    for wav in waves:
        decoded = model.decode(model.encode(wav[None], bandwidth=bandwidth))[0]
        decoded = decoded[..., : wav.shape[-1]]
        est, ref, hz = active_spectra(decoded, wav, model.sample_rate)
        if not bool(ref.sum() > 0):
            continue
        gain = 10 * (ref.clamp(min=1e-20).log10() - est.clamp(min=1e-20).log10())
        total = gain if total is None else total + gain
        count += 1
    if not count:
        raise ValueError("no audio (or only silence) to measure the gain on")
    return total / count, hz


def smooth_db(gain_db: torch.Tensor, hz: torch.Tensor, octaves: float) -> torch.Tensor:
    """`gain_db` (bins,) averaged over a band `octaves` wide around each bin (bins below
    50 Hz take the band around 50 Hz)."""
    out = torch.empty_like(gain_db)
    half = 2 ** (octaves / 2)
    for i, f in enumerate(hz.tolist()):
        centre = max(f, 50.0)
        band = (hz >= centre / half) & (hz <= centre * half)
        out[i] = gain_db[band].mean()
    return out


def minimum_phase_fir(gain_db: torch.Tensor, taps: int) -> torch.Tensor:
    """The minimum-phase FIR filter (taps,) whose magnitude response approximates
    10 ** (gain_db / 20), `gain_db` (bins,) given at the bins of an rFFT from 0 Hz to Nyquist.
    Designed through the real cepstrum (folding it onto positive quefrencies makes the phase
    minimal), then cut to `taps` with a half-Hann taper over its last quarter."""
    if taps < 1 or gain_db.ndim != 1 or gain_db.shape[0] < 2:
        raise ValueError(f"need taps >= 1 and a gain per bin (bins,), got {taps}, {gain_db.shape}")
    bins = DESIGN_FFT // 2 + 1
    on_grid = F.interpolate(gain_db.double()[None, None], bins, mode="linear", align_corners=True)
    log_magnitude = on_grid[0, 0] * (math.log(10) / 20)
    cepstrum = torch.fft.irfft(log_magnitude, DESIGN_FFT)
    folded = torch.zeros_like(cepstrum)
    folded[0] = cepstrum[0]
    folded[1 : DESIGN_FFT // 2] = 2 * cepstrum[1 : DESIGN_FFT // 2]
    folded[DESIGN_FFT // 2] = cepstrum[DESIGN_FFT // 2]
    response = torch.fft.irfft(torch.exp(torch.fft.rfft(folded)), DESIGN_FFT)[:taps]
    fade = max(1, taps // 4)
    taper = torch.ones(taps, dtype=torch.float64)
    taper[taps - fade :] = torch.hann_window(2 * fade + 1, dtype=torch.float64)[fade + 1 :]
    return (response * taper).float()


def _last_conv(model: Codec) -> Conv1d:
    """The causal, stride-1 last conv of `model`'s SEANet decoder, where a filter folds in.
    ValueError when the decoder does not end in one (DAC ends in tanh, the iSTFT decoder in an
    inverse STFT: a linear filter does not fold into either)."""
    config = model.config.decoder
    last = model.decoder.model[-1] if config.get("name") == "seanet" else None
    if (
        not isinstance(last, Conv1d)
        or not last.causal
        or last.stride != 1
        or last.dilation != 1
        or last.norm is not None
    ):
        raise ValueError(
            f"{model.model_id}: the output filter folds only into a causal SEANet decoder's "
            f"last conv (decoder {config.get('name')!r})"
        )
    return last


def folded_config(model: Codec, taps: int) -> CodecConfig:
    """`model`'s config with a `taps`-tap output filter folded into its decoder's last conv:
    ValueError for a decoder that takes none (see _last_conv) or a kernel past its bound,
    before any weights are built."""
    last = _last_conv(model)
    return model.config.replace(decoder={"last_kernel_size": last.kernel_size + taps - 1})


@torch.no_grad()
def fold_output_filter(model: Codec, fir: torch.Tensor) -> Codec:
    """`model` with causal FIR filter `fir` (taps,) applied to its decoded audio, folded into
    its SEANet decoder's last conv (a new model; `model` is left as it was).
    ValueError as folded_config."""
    last = _last_conv(model)
    taps = fir.shape[-1]
    folded = Codec(folded_config(model, taps))
    prefix = f"decoder.model.{len(model.decoder.model) - 1}."  # the last conv's weights
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}
    missing = folded.load_state_dict(kept, strict=False).missing_keys
    if any(not k.startswith(prefix) for k in missing):
        raise ValueError(f"{model.model_id}: no weights for {missing[0]}")
    weight = last.conv.weight  # (c_out, c_in, k), through its weight norm if it has one
    # out[n] = sum_j fir[j] conv(x)[n - j]: as a cross-correlation, kernel'[m] =
    # sum_j kernel[m + j - (taps - 1)] fir[j]
    rows = weight.reshape(-1, 1, weight.shape[-1])
    kernel = F.conv1d(F.pad(rows, (taps - 1, taps - 1)), fir.to(weight)[None, None])
    kernel = kernel.reshape(*weight.shape[:2], -1)
    target = folded.decoder.model[-1].conv
    set_weight(target, kernel)
    if target.bias is not None:
        target.bias.copy_(last.conv.bias * fir.sum())
    return folded.train(model.training)
