"""Quality at each number of codebook levels, from one encode per clip.

    wav (c, t) -> prepare (loudness) -> encode once at the most levels -> codes (g, L, f)
               -> for each n: decode codes[:, :n] (the codes at n levels are the first n)
               -> metrics(decoded (c, t), wav (c, t))

The trainer's validation, `codec eval` and the demo's report all measure through here, with the
windows and loudness handling that `codec encode` / `codec decode` use (codec.coding).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from codec.coding import PreparedAudio, Windowing, decode_codes, encode_batch, prepare_audio
from codec.models import Codec

Metrics = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]


@dataclass
class ClipQuality:
    """One clip: what was encoded, its codes at the most levels, and by number of levels n
    the decoded audio and its scores."""

    prepared: PreparedAudio
    codes: torch.Tensor  # (g, max(levels), f), int64 on the CPU
    decoded: dict[int, torch.Tensor]  # n -> (c, t) at the model rate, on the CPU
    scores: dict[int, dict[str, float]]  # n -> metrics(decoded[n], wav)


def quality_by_level(
    model: Codec,
    wavs: Iterable[torch.Tensor],
    levels: Iterable[int],
    metrics: Metrics,
    windowing: Windowing | None = None,
) -> Iterator[ClipQuality]:
    """For each clip wav (c, t) at the model's rate and channels: its codes and scores at every
    number of levels in `levels` (each in 1..model.levels), decoded from a single encode.
    `metrics(estimate, reference)` takes two (c, t) CPU tensors. Runs under no_grad; the model
    should be in eval mode."""
    levels = sorted(set(levels))
    if not levels or levels[0] < 1 or levels[-1] > model.levels:
        raise ValueError(f"levels must be within 1..{model.levels}, got {levels}")
    windowing = windowing or Windowing.for_model(model)
    for wav in wavs:
        wav = wav.cpu()
        prepared = prepare_audio(model, wav, model.sample_rate, windowing)
        with torch.no_grad():
            (codes,) = encode_batch(model, [prepared.wav], levels[-1], windowing)
            decoded = {
                n: decode_codes(
                    model, codes[:, :n].contiguous(), prepared.length, windowing, prepared.gains_db
                )
                for n in levels
            }
            scores = {n: metrics(audio, wav) for n, audio in decoded.items()}
        yield ClipQuality(prepared, codes, decoded, scores)


def level_ladder(total: int) -> list[int]:
    """1, 2, 4, ... up to `total` levels, and `total` itself."""
    return sorted({2**k for k in range(total.bit_length()) if 2**k <= total} | {total})
