"""The generator's loss terms by the names `loss.weights` gives them.

    mel        multi-scale mel distance            l1     waveform L1
    mel_level  log mel band levels (balance)       stft   multi-resolution STFT distance
    sisdr      minus SI-SDR                        stoi   minus STOI
    adv, feat  adversarial and feature matching: the discriminator's (the solver computes them)

Each reconstruction term is a function of (reconstruction, target), both (b, c, t), -> a
scalar; a term of weight 0 is not computed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from codec.losses import (
    MelLevelLoss,
    MelLoss,
    MultiResolutionSTFTLoss,
    negative_si_sdr,
    negative_stoi,
    waveform_l1,
)

Term = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ADVERSARIAL = ("adv", "feat")


def reconstruction_terms(loss, sample_rate: int, device: torch.device) -> dict[str, Term]:
    """Every reconstruction term, its modules on `device`; `loss` is the config's loss group
    (mel_n_ffts, n_mels, mel_level_f_max)."""
    return {
        "mel": MelLoss(sample_rate, tuple(loss.mel_n_ffts), loss.n_mels).to(device),
        "mel_level": MelLevelLoss(sample_rate, f_max=loss.mel_level_f_max).to(device),
        "l1": waveform_l1,
        "stft": MultiResolutionSTFTLoss().to(device),
        "sisdr": negative_si_sdr,
        "stoi": functools.partial(_negative_stoi, sample_rate=sample_rate),
    }


def _negative_stoi(estimate, target, *, sample_rate: int) -> torch.Tensor:
    return negative_stoi(estimate, target, sample_rate)


def active_weights(weights: dict, terms: dict, *, adversarial: bool) -> dict[str, float]:
    """The terms to compute and their weights: the nonzero ones, without adv and feat when
    there is no discriminator. ValueError for a weight that names no term."""
    unknown = sorted(set(weights) - set(terms) - set(ADVERSARIAL))
    if unknown:
        known = ", ".join([*terms, *ADVERSARIAL])
        raise ValueError(f"loss.weights.{unknown[0]}: no such loss term ({known})")
    return {
        name: float(weight)
        for name, weight in weights.items()
        if weight and (adversarial or name not in ADVERSARIAL)
    }
