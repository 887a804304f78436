"""Quality at each number of codebook levels, from one encode per clip.

    wav (c, t) -> prepare (loudness) -> encode once at the most levels -> codes (g, L, f)
               -> for each n: decode codes[:, :n] (the codes at n levels are the first n)
               -> metrics(decoded (c, t), wav (c, t))
    and, when asked, prepare -> decoder(encoder(.)) without the quantizer -> undo the gains
               -> metrics: the ceiling that no number of levels passes

The trainer's validation, `codec eval` and the demo's report all measure through here, with the
windows and loudness handling that `codec encode` / `codec decode` use (codec.coding).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from codec.audio import apply_gain_db
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
    unquantized: dict[str, float] | None = None  # metrics of the latents decoded without codes


def quality_by_level(
    model: Codec,
    wavs: Iterable[torch.Tensor],
    levels: Iterable[int],
    metrics: Metrics,
    windowing: Windowing | None = None,
    unquantized: bool = False,
) -> Iterator[ClipQuality]:
    """For each clip wav (c, t) at the model's rate and channels: its codes and scores at every
    number of levels in `levels` (each in 1..model.levels), decoded from a single encode, and
    with `unquantized` the scores of the encoder's output decoded as it is.
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
            ceiling = (
                metrics(_unquantized(model, prepared, windowing), wav) if unquantized else None
            )
        yield ClipQuality(prepared, codes, decoded, scores, ceiling)


def _unquantized(model: Codec, prepared: PreparedAudio, windowing: Windowing) -> torch.Tensor:
    """The decoder on the encoder's output, no codes between: (c, t) at the model rate, the
    loudness gains of `prepared` undone chunk by chunk as decoding codes undoes them. The
    whole clip in one pass (a clip longer than a window is not windowed)."""
    if model.segmentation is not None:
        raise ValueError("a segmented model (EnCodec 48 kHz) has no unquantized decoding here")
    wav = prepared.wav[None].to(next(model.parameters()).device)
    latents = model.encoder(wav)
    decoded = model.decoder(latents)[0, :, : prepared.length].float().cpu()
    decoded = torch.nn.functional.pad(decoded, (0, prepared.length - decoded.shape[-1]))
    if not prepared.gains_db:
        return decoded
    chunk = windowing.chunk_for(model.frames_for(prepared.length)) * model.hop_length
    pieces = decoded.split(chunk, -1)
    return torch.cat([apply_gain_db(p, -g) for p, g in zip(pieces, prepared.gains_db)], -1)


def level_ladder(total: int) -> list[int]:
    """1, 2, 4, ... up to `total` levels, and `total` itself."""
    return sorted({2**k for k in range(total.bit_length()) if 2**k <= total} | {total})
