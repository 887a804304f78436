"""Fixed-length segments coded independently and joined by linear overlap-add (EnCodec 48 kHz).

A signal of t samples is cut at offsets 0, stride, 2 stride, ... < t into pieces of at most
`length` samples; each piece gives ceil(piece / hop) frames. Codes of all segments are laid end
to end on the frame axis, (b, g, q, sum of frames), so the layout follows from t alone and the
(batch, groups, levels, frames) contract holds: EnCodec 48 kHz gives 150 frames per full 1 s
segment, advancing by 148.5 frames of audio. Decoding overlap-adds the segments with triangular
weights (each peaking mid-segment), normalised by the summed weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Segmentation:
    length: int  # samples per segment
    stride: int  # samples between segment starts
    hop: int  # samples per frame

    @classmethod
    def of(cls, seconds: float, overlap: float, sample_rate: int, hop: int) -> Segmentation:
        length = int(seconds * sample_rate)
        return cls(length, max(1, int((1 - overlap) * length)), hop)

    def spans(self, samples: int) -> list[tuple[int, int]]:
        """(start, end) in samples of each segment of a `samples`-long signal."""
        return [(s, min(s + self.length, samples)) for s in range(0, samples, self.stride)]

    def frame_counts(self, samples: int) -> list[int]:
        return [math.ceil((end - start) / self.hop) for start, end in self.spans(samples)]

    def frames(self, samples: int) -> int:
        return sum(self.frame_counts(samples))

    def counts_for_frames(self, frames: int) -> list[int]:
        """Frames per segment from the total alone: full segments, then the remainder."""
        full = math.ceil(self.length / self.hop)
        n = max(1, math.ceil(frames / full))
        return [full] * (n - 1) + [frames - full * (n - 1)]


def rms_scale(wav: torch.Tensor) -> torch.Tensor:
    """(b, c, t) -> (b,): RMS of the channel mean, plus 1e-8 (EnCodec's normalisation)."""
    return wav.mean(1).pow(2).mean(-1).sqrt() + 1e-8


def gains_db(scales) -> list[float]:
    """Segment scales -> the gain each segment got when divided by its scale, in dB
    (-20 log10 scale): how .codes headers store them."""
    return [-20.0 * math.log10(float(scale)) for scale in scales]


def scales_from_gains(gains: list[float]) -> torch.Tensor:
    """The inverse of `gains_db`: (1, segments) float64 scales for `Codec.decode`."""
    return torch.tensor([[10.0 ** (-gain / 20.0) for gain in gains]], dtype=torch.float64)


def overlap_add(pieces: list[torch.Tensor], stride: int) -> torch.Tensor:
    """Pieces (b, c, n_i) starting `stride` apart -> (b, c, stride * (k - 1) + n_last), each
    weighted by a triangle over the first piece's length, normalised by the weights' sum."""
    first = pieces[0]
    total = stride * (len(pieces) - 1) + pieces[-1].shape[-1]
    ramp = torch.linspace(0, 1, first.shape[-1] + 2, device=first.device, dtype=first.dtype)
    weight = 0.5 - (ramp[1:-1] - 0.5).abs()
    out = first.new_zeros(*first.shape[:-1], total)
    weights = first.new_zeros(total)
    for index, piece in enumerate(pieces):
        start, n = index * stride, piece.shape[-1]
        out[..., start : start + n] += weight[:n] * piece
        weights[start : start + n] += weight[:n]
    return out / weights
