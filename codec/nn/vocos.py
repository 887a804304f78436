"""Frame-rate encoder and decoder (Vocos-style): ConvNeXt blocks at the codec's frame rate, with
the waveform reached through a short-time Fourier transform instead of strided convolutions.

Decoder: (b, dimension, f) -> (b, channels, f * hop). ConvNeXt blocks run at the frame rate;
a linear head predicts, per frame, `hop / istft_hop` STFT frames (log-magnitude and phase of
n_fft / 2 + 1 bins each), which an inverse STFT (irfft, Hann window, overlap-add at
`istft_hop`) turns into samples.

Encoder: (b, channels, t) -> (b, dimension, ceil(t / hop)). A fixed STFT (Hann window, n_fft,
hop `istft_hop`) computed as a strided convolution, its complex bins power-law compressed
(|X|^0.3 with the phase kept), a strided conv that groups `hop / istft_hop` STFT frames into one
latent frame, ConvNeXt blocks, then a linear map to the latent dimension.

Causal option: depthwise convs padded on the left; the encoder's STFT frames end at the sample
they are computed at; the decoder places the window of STFT frame j at samples
[j * istft_hop, j * istft_hop + n_fft), so output sample s depends on frames up to
floor(s / istft_hop) only and a frame's samples are final once the frames after it have added
their share. The algorithmic latency of a causal encoder + decoder is one latent frame (hop
samples). Non-causal: centred convs and windows shifted back by (n_fft / istft_hop - 1) // 2
frames. Both stream through `codec.nn.streaming` (causal only), chunk by chunk with the offline
result.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from codec.nn.conv import Conv1d
from codec.nn.streaming import State, StreamingModule

COMPRESSION = 0.3  # the encoder's STFT magnitude exponent
MAX_LOG_MAGNITUDE = 8.0  # exp(8) ~ 3000: a bound on the decoder's predicted magnitudes


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> Linear (dim -> hidden) -> GELU -> Linear (-> dim) ->
    per-channel layer scale, plus the input: (b, dim, f) -> (b, dim, f)."""

    def __init__(self, dim: int, hidden: int, kernel_size: int, causal: bool, layer_scale: float):
        super().__init__()
        self.dwconv = Conv1d(
            dim, dim, kernel_size, groups=dim, causal=causal, norm="none", pad_mode="zeros"
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = rearrange(self.dwconv(x), "b d f -> b f d")
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y)))) * self.gamma
        return x + rearrange(y, "b f d -> b d f")


class ConvNeXt(nn.Module):
    """conv (in -> dim, kernel k) -> LayerNorm (with `embed_norm`) -> blocks -> LayerNorm:
    (b, in, f) -> (b, f, dim), frames first for the linear layer that follows.

    The decoder has no LayerNorm after its first conv: that would make it blind to the scale
    of the quantized latents, and the commitment loss then shrinks the encoder's output
    until its codes collapse (seen within 200 steps on speech16k)."""

    def __init__(
        self,
        in_channels: int,
        dim: int,
        hidden: int,
        n_blocks: int,
        kernel_size: int,
        causal: bool,
        embed_kernel: int | None = None,
        embed_stride: int = 1,
        embed_norm: bool = True,
    ):
        super().__init__()
        self.embed = Conv1d(
            in_channels,
            dim,
            embed_kernel or kernel_size,
            stride=embed_stride,
            causal=causal,
            norm="none",
            pad_mode="zeros",
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6) if embed_norm else None
        scale = 1.0 / max(n_blocks, 1)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(dim, hidden, kernel_size, causal, scale) for _ in range(n_blocks)
        )
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        if self.norm is not None:
            x = rearrange(self.norm(rearrange(x, "b d f -> b f d")), "b f d -> b d f")
        for block in self.blocks:
            x = block(x)
        return self.final_norm(rearrange(x, "b d f -> b f d"))


def _check_stft(hop_length: int, istft_hop: int, n_fft: int) -> None:
    if hop_length % istft_hop:
        raise ValueError(f"hop_length {hop_length} must be a multiple of istft_hop {istft_hop}")
    if n_fft % istft_hop or n_fft < istft_hop:
        raise ValueError(f"n_fft {n_fft} must be a multiple of istft_hop {istft_hop}")


@dataclasses.dataclass
class OverlapAddState(State):
    """tail (b * channels, n_fft / hop - 1, hop): the blocks that later frames complete."""

    tail: torch.Tensor

    def reset(self, mask: torch.Tensor) -> None:  # one row per item and channel
        super().reset(mask.repeat_interleave(self.tail.shape[0] // mask.shape[0]))

    def batch_size(self) -> int:  # streams, not items: checked by the decoder's rows
        return self.tail.shape[0]


class OverlapAdd(StreamingModule[OverlapAddState]):
    """Inverse-STFT synthesis: windowed frames (b, n, n_fft) at hop h -> (b, n * h) samples,
    divided by the steady-state sum of squared windows (so a stream's first n_fft / h - 1
    frames fade in). Frame j's window starts at sample (j - lookahead) * h. Streaming (causal,
    lookahead 0): the tails that later frames complete are carried between calls, one row per
    item and channel (`channels`)."""

    def __init__(self, n_fft: int, hop: int, lookahead: int, channels: int = 1):
        super().__init__()
        self.hop, self.overlap, self.lookahead = hop, n_fft // hop, lookahead
        self.channels = channels
        window = torch.hann_window(n_fft, periodic=True)
        envelope = window.square().view(self.overlap, hop).sum(0)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("envelope", envelope, persistent=False)

    def init_streaming_state(self, batch_size: int) -> OverlapAddState | None:
        if self.lookahead or self.overlap == 1:  # non-causal, or nothing to carry
            return None
        rows = batch_size * self.channels
        return OverlapAddState(torch.zeros(rows, self.overlap - 1, self.hop, device=self._device()))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        n, k = frames.shape[1], self.overlap
        parts = rearrange(frames * self.window, "b n (k h) -> b n k h", k=k)
        # block s of the output gathers part i of frame s - i
        blocks = sum(F.pad(parts[:, :, i], (0, 0, i, k - 1 - i)) for i in range(k))
        if self.is_streaming:
            state = self.streaming_state(frames.shape[0])
            carried = k - 1
            head = blocks[:, :carried] + state.tail.to(blocks.dtype)
            blocks = torch.cat([head, blocks[:, carried:]], 1)
            blocks, state.tail = blocks[:, :n], blocks[:, n:]
        else:
            blocks = blocks[:, self.lookahead : self.lookahead + n]
        return rearrange(blocks / self.envelope, "b n h -> b (n h)")


class ISTFTDecoder(nn.Module):
    """(b, dimension, f) -> (b, channels, f * hop_length): ConvNeXt at the frame rate, a head
    predicting hop_length / istft_hop STFT frames per latent frame, inverse STFT."""

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 256,
        hidden: int = 768,
        n_blocks: int = 8,
        kernel_size: int = 7,
        hop_length: int = 320,
        istft_hop: int = 160,
        n_fft: int = 640,
        causal: bool = False,
    ):
        super().__init__()
        _check_stft(hop_length, istft_hop, n_fft)
        self.channels, self.hop_length, self.causal = channels, hop_length, causal
        self.pad_mode = "zeros"
        self.n_fft, self.per_frame = n_fft, hop_length // istft_hop
        self.backbone = ConvNeXt(
            dimension, n_filters, hidden, n_blocks, kernel_size, causal, embed_norm=False
        )
        bins = n_fft // 2 + 1
        self.head = nn.Linear(n_filters, self.per_frame * channels * 2 * bins)
        overlap = n_fft // istft_hop
        lookahead = 0 if causal else (overlap - 1) // 2
        self.synthesis = OverlapAdd(n_fft, istft_hop, lookahead, channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.head(self.backbone(z))  # (b, f, r * c * 2 * bins)
        spec = rearrange(
            h.float(),
            "b f (r c two k) -> two (b c) (f r) k",
            r=self.per_frame,
            c=self.channels,
            two=2,
        )
        magnitude = spec[0].clamp(max=MAX_LOG_MAGNITUDE).exp()
        frames = self._inverse_rfft(magnitude, spec[1])
        wav = self.synthesis(frames)
        return rearrange(wav, "(b c) t -> b c t", c=self.channels)

    def _inverse_rfft(self, magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """irfft of the bins magnitude * e^(i phase), (..., bins) -> (..., n_fft). While
        exporting, as two products with a fixed real basis: the exporters have no complex
        numbers, and torch.export's irfft fixes the batch size."""
        if not torch.compiler.is_exporting():
            return torch.fft.irfft(torch.polar(magnitude, phase), n=self.n_fft)
        cosines, sines = _inverse_rfft_basis(self.n_fft, magnitude.device)
        return (magnitude * phase.cos()) @ cosines + (magnitude * phase.sin()) @ sines


def _inverse_rfft_basis(n_fft: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(bins, n_fft) each: irfft(X)[n] = sum_k Re X_k cosines[k, n] + Im X_k sines[k, n] (the
    imaginary parts of the first and last bins drop out, as irfft ignores them)."""
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    angle = 2 * math.pi * k * torch.arange(n_fft, dtype=torch.float64) / n_fft
    weight = torch.full_like(k, 2.0 / n_fft)
    weight[0] = weight[-1] = 1.0 / n_fft
    return (angle.cos() * weight).float().to(device), (-angle.sin() * weight).float().to(device)


class STFTFeatures(nn.Module):
    """(b, channels, t) -> (b, channels * 2 * (n_fft / 2 + 1), ceil(t / hop)): the real and
    imaginary parts of a Hann-windowed STFT, magnitude compressed to |X|^0.3. Computed as a
    strided conv (one group per channel) with a fixed (not saved, not trained) Fourier basis,
    so it streams like any causal conv."""

    def __init__(self, channels: int, n_fft: int, hop: int, causal: bool):
        super().__init__()
        self.channels = channels
        self.frames = Conv1d(
            channels,
            channels * (n_fft + 2),
            n_fft,
            stride=hop,
            groups=channels,
            bias=False,
            causal=causal,
            norm="none",
            pad_mode="zeros",
        )
        conv = self.frames.conv
        del conv.weight
        basis = _fourier_basis(n_fft).repeat(channels, 1, 1)
        conv.register_buffer("weight", basis, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = rearrange(self.frames(x.float()), "b (c k) f -> b c k f", c=self.channels)
        re, im = spec.chunk(2, dim=2)
        gain = (re.square() + im.square() + 1e-12).pow((COMPRESSION - 1) / 2)
        return rearrange(torch.cat([re * gain, im * gain], 2), "b c k f -> b (c k) f")


def _fourier_basis(n_fft: int) -> torch.Tensor:
    """(n_fft + 2, 1, n_fft): Hann-windowed cosines then negated sines of the rfft bins."""
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
    angle = 2 * math.pi * k * torch.arange(n_fft, dtype=torch.float64) / n_fft
    basis = torch.cat([angle.cos() * window, -angle.sin() * window])
    return basis[:, None].float()


class STFTEncoder(nn.Module):
    """(b, channels, t) -> (b, dimension, ceil(t / hop_length)): compressed STFT at istft_hop,
    a strided conv down to the frame rate, ConvNeXt blocks, a linear map to the latent."""

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 256,
        hidden: int = 768,
        n_blocks: int = 6,
        kernel_size: int = 7,
        hop_length: int = 320,
        istft_hop: int = 160,
        n_fft: int = 640,
        causal: bool = False,
    ):
        super().__init__()
        _check_stft(hop_length, istft_hop, n_fft)
        self.hop_length, self.causal, self.pad_mode = hop_length, causal, "zeros"
        per_frame = hop_length // istft_hop
        self.features = STFTFeatures(channels, n_fft, istft_hop, causal)
        self.backbone = ConvNeXt(
            channels * (n_fft + 2),
            n_filters,
            hidden,
            n_blocks,
            kernel_size,
            causal,
            embed_kernel=per_frame,
            embed_stride=per_frame,
        )
        self.project = nn.Linear(n_filters, dimension)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(self.project(self.backbone(self.features(x))), "b f d -> b d f")
