"""GAN discriminators for codec training.

Every discriminator takes audio `wav` of shape (batch, channels, samples) and returns
`(logits, features)`:

- `logits`: a list with one tensor per sub-discriminator (one per STFT scale, period or FFT
  size), each of shape (batch, 1, ...), unbounded scores (higher means "real");
- `features`: a list with one entry per sub-discriminator, each a list of the activations after
  every hidden layer (for the feature-matching loss).

Three families, all built from weight-normed 2-D convolutions and LeakyReLU(0.2):

- `MultiScaleSTFTDiscriminator` (EnCodec): complex spectrograms at several FFT sizes, real and
  imaginary parts as channels, 2-D convs over (time, frequency) dilated in time and strided in
  frequency.
- `MultiPeriodDiscriminator` (HiFi-GAN, DAC): the waveform folded into (samples / period, period)
  and convolved along the folded time axis only.
- `MultiBandDiscriminator` (DAC): complex spectrograms at several FFT sizes split into frequency
  bands, each band with its own conv stack, band outputs joined along frequency before the
  final conv.

`make_discriminator(name, channels, filters=...)` builds one by name ("msstft", "mpd", "mbd");
`CombinedDiscriminator([...])` runs several and joins their lists. `filters` sets the width of
every family, so a CPU demo can use small ones (e.g. 8).

Spectrograms are computed in float32 with autocast off (torch.stft has no half-precision path on
every device); the convs after it follow any autocast region the caller opened.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from codec.nn.conv import pad1d

LEAKY_SLOPE = 0.2

Output = tuple[list[torch.Tensor], list[list[torch.Tensor]]]


def _each(subs: nn.ModuleList, wav: torch.Tensor) -> Output:
    """One (logits, features) pair per sub-discriminator, as two lists."""
    logits, features = [], []
    for sub in subs:
        score, feats = sub(wav)
        logits.append(score)
        features.append(feats)
    return logits, features


def _conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
) -> nn.Module:
    """A weight-normed 2-D conv padded so that, at stride 1, the output keeps the input size."""
    padding = tuple((k - 1) * d // 2 for k, d in zip(kernel_size, dilation))
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, stride, padding=padding, dilation=dilation
    )
    return parametrizations.weight_norm(conv)


def _run_stack(
    layers: nn.ModuleList, x: torch.Tensor, features: list[torch.Tensor]
) -> torch.Tensor:
    """Apply conv + LeakyReLU for each layer, appending every activation to `features`."""
    for layer in layers:
        x = F.leaky_relu(layer(x), LEAKY_SLOPE)
        features.append(x)
    return x


class ComplexSpectrogram(nn.Module):
    """(b, c, t) audio -> (b, 2c, frames, n_fft // 2 + 1): real and imaginary parts of a
    normalised, centred STFT with a Hann window, channel order [re_0, im_0, re_1, im_1, ...]."""

    def __init__(self, n_fft: int, hop_length: int | None = None, win_length: int | None = None):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length or n_fft // 4
        self.win_length = win_length or n_fft
        if self.win_length > n_fft:
            raise ValueError(f"win_length {self.win_length} is longer than n_fft {n_fft}")
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 3:
            raise ValueError(f"expected audio of shape (batch, channels, samples), got {wav.shape}")
        b, c, t = wav.shape
        x = wav.reshape(b * c, t).float()
        min_length = self.n_fft // 2 + 1  # centred reflect padding needs more than n_fft / 2
        if t < min_length:
            x = F.pad(x, (0, min_length - t))
        with torch.autocast(device_type=wav.device.type, enabled=False):
            spec = torch.stft(
                x,
                self.n_fft,
                hop_length=self.hop_length,
                win_length=self.win_length,
                window=self.window.float(),
                center=True,
                pad_mode="reflect",
                normalized=True,
                return_complex=True,
            )  # (b * c, freq, frames)
        spec = torch.view_as_real(spec)  # (b * c, freq, frames, 2)
        freq, frames = spec.shape[1], spec.shape[2]
        spec = spec.reshape(b, c, freq, frames, 2).permute(0, 1, 4, 3, 2)  # (b, c, 2, frames, f)
        return spec.reshape(b, 2 * c, frames, freq)


# -- EnCodec's multi-scale STFT discriminator ----------------------------------------------


class STFTDiscriminator(nn.Module):
    """One scale of the MS-STFT discriminator: (b, c, t) -> logits (b, 1, frames, f'), where
    f' is the number of frequency bins halved once per dilation (rounded up)."""

    def __init__(
        self,
        channels: int = 1,
        filters: int = 32,
        n_fft: int = 1024,
        hop_length: int | None = None,
        win_length: int | None = None,
        dilations: Sequence[int] = (1, 2, 4),
        kernel_size: tuple[int, int] = (3, 9),
        filters_scale: int = 1,
        max_filters: int = 1024,
    ):
        super().__init__()
        self.spectrogram = ComplexSpectrogram(n_fft, hop_length, win_length)
        width = filters
        layers = [_conv2d(2 * channels, width, kernel_size)]
        for i, dilation in enumerate(dilations):
            out = min(filters * filters_scale ** (i + 1), max_filters)
            layers.append(_conv2d(width, out, kernel_size, stride=(1, 2), dilation=(dilation, 1)))
            width = out
        layers.append(_conv2d(width, width, (kernel_size[0], kernel_size[0])))
        self.layers = nn.ModuleList(layers)
        self.to_logits = _conv2d(width, 1, (kernel_size[0], kernel_size[0]))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features: list[torch.Tensor] = []
        x = _run_stack(self.layers, self.spectrogram(wav), features)
        return self.to_logits(x), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """EnCodec's MS-STFT discriminator: one `STFTDiscriminator` per FFT size.

    wav (b, channels, t) -> logits: list of len(n_ffts) tensors (b, 1, frames_i, bins_i),
    features: list of len(n_ffts) lists of activations (b, filters, frames_i, bins_ij).
    """

    def __init__(
        self,
        channels: int = 1,
        filters: int = 32,
        n_ffts: Sequence[int] = (1024, 2048, 512, 256, 128),
        hop_lengths: Sequence[int] | None = None,
        win_lengths: Sequence[int] | None = None,
        **scale_options,
    ):
        super().__init__()
        hop_lengths = hop_lengths or [n // 4 for n in n_ffts]
        win_lengths = win_lengths or list(n_ffts)
        if not len(n_ffts) == len(hop_lengths) == len(win_lengths):
            raise ValueError("n_ffts, hop_lengths and win_lengths must have the same length")
        self.scales = nn.ModuleList(
            STFTDiscriminator(channels, filters, n, hop, win, **scale_options)
            for n, hop, win in zip(n_ffts, hop_lengths, win_lengths)
        )

    def forward(self, wav: torch.Tensor) -> Output:
        return _each(self.scales, wav)


# -- HiFi-GAN's multi-period discriminator -------------------------------------------------


class PeriodDiscriminator(nn.Module):
    """(b, c, t) -> logits (b, 1, t', period): the waveform, reflect-padded to a multiple of
    `period`, folded to (b, c, t / period, period) and convolved along the first axis with
    kernels (5, 1), strides (3, 1); widths filters * (1, 4, 16, 32, 32), capped at max_filters
    (32 -> 128 -> 512 -> 1024 -> 1024 at the default 32)."""

    WIDTH_MULTIPLIERS = (1, 4, 16, 32, 32)

    def __init__(
        self, channels: int = 1, period: int = 2, filters: int = 32, max_filters: int = 1024
    ):
        super().__init__()
        self.period = period
        widths = [min(filters * m, max_filters) for m in self.WIDTH_MULTIPLIERS]
        layers, width = [], channels
        for i, out in enumerate(widths):
            stride = (3, 1) if i < len(widths) - 1 else (1, 1)
            layers.append(_conv2d(width, out, (5, 1), stride=stride))
            width = out
        self.layers = nn.ModuleList(layers)
        self.to_logits = _conv2d(width, 1, (3, 1))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = wav.shape
        remainder = t % self.period
        if remainder:
            wav = pad1d(wav, 0, self.period - remainder, "reflect")
        x = wav.reshape(b, c, -1, self.period)
        features: list[torch.Tensor] = []
        x = _run_stack(self.layers, x, features)
        return self.to_logits(x), features


class MultiPeriodDiscriminator(nn.Module):
    """HiFi-GAN / DAC MPD: one `PeriodDiscriminator` per period.

    wav (b, channels, t) -> logits: list of len(periods) tensors (b, 1, t_p, p),
    features: list of len(periods) lists of 5 activations (b, width_l, t_pl, p).
    """

    def __init__(
        self,
        channels: int = 1,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        filters: int = 32,
        max_filters: int = 1024,
    ):
        super().__init__()
        self.periods = nn.ModuleList(
            PeriodDiscriminator(channels, p, filters, max_filters) for p in periods
        )

    def forward(self, wav: torch.Tensor) -> Output:
        return _each(self.periods, wav)


# -- DAC's multi-band multi-resolution STFT discriminator ----------------------------------


class BandSplitSTFTDiscriminator(nn.Module):
    """One FFT size of the multi-band discriminator: (b, c, t) -> logits (b, 1, frames, f').

    The complex spectrogram (b, 2c, frames, n_fft // 2 + 1) is cut along frequency at the
    fractions in `bands`; each band goes through its own conv stack (kernels (3, 9), three
    layers strided by 2 in frequency), the band outputs are joined along frequency and one
    final conv gives the logits. Features: every band's activations, band by band.
    """

    def __init__(
        self,
        channels: int = 1,
        n_fft: int = 2048,
        bands: Sequence[tuple[float, float]] = (
            (0, 0.1),
            (0.1, 0.25),
            (0.25, 0.5),
            (0.5, 0.75),
            (0.75, 1.0),
        ),
        filters: int = 32,
        hop_length: int | None = None,
    ):
        super().__init__()
        self.spectrogram = ComplexSpectrogram(n_fft, hop_length, n_fft)
        bins = n_fft // 2 + 1
        self.band_bins: list[tuple[int, int]] = []
        for low, high in bands:
            if not 0 <= low < high <= 1:
                raise ValueError(f"band ({low}, {high}) is not a range inside [0, 1]")
            start = int(low * bins)
            self.band_bins.append((start, max(int(high * bins), start + 1)))
        self.bands = nn.ModuleList(
            nn.ModuleList(
                [
                    _conv2d(2 * channels, filters, (3, 9)),
                    _conv2d(filters, filters, (3, 9), stride=(1, 2)),
                    _conv2d(filters, filters, (3, 9), stride=(1, 2)),
                    _conv2d(filters, filters, (3, 9), stride=(1, 2)),
                    _conv2d(filters, filters, (3, 3)),
                ]
            )
            for _ in bands
        )
        self.to_logits = _conv2d(filters, 1, (3, 3))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = self.spectrogram(wav)
        features: list[torch.Tensor] = []
        outputs = [
            _run_stack(layers, spec[..., start:stop], features)
            for layers, (start, stop) in zip(self.bands, self.band_bins)
        ]
        return self.to_logits(torch.cat(outputs, dim=-1)), features


class MultiBandDiscriminator(nn.Module):
    """DAC's multi-band multi-resolution STFT discriminator: one `BandSplitSTFTDiscriminator`
    per FFT size (hop n_fft // 4).

    wav (b, channels, t) -> logits: list of len(fft_sizes) tensors (b, 1, frames_i, bins_i),
    features: list of len(fft_sizes) lists of 5 * len(bands) activations.
    """

    def __init__(
        self,
        channels: int = 1,
        fft_sizes: Sequence[int] = (2048, 1024, 512),
        bands: Sequence[tuple[float, float]] = (
            (0, 0.1),
            (0.1, 0.25),
            (0.25, 0.5),
            (0.5, 0.75),
            (0.75, 1.0),
        ),
        filters: int = 32,
    ):
        super().__init__()
        self.resolutions = nn.ModuleList(
            BandSplitSTFTDiscriminator(channels, n, bands, filters) for n in fft_sizes
        )

    def forward(self, wav: torch.Tensor) -> Output:
        return _each(self.resolutions, wav)


# -- building and combining ----------------------------------------------------------------


class CombinedDiscriminator(nn.Module):
    """Several discriminators run on the same audio; their logits lists are concatenated in
    order, and so are their features lists (so len(logits) is the sum of the parts')."""

    def __init__(self, discriminators: Sequence[nn.Module]):
        super().__init__()
        if not discriminators:
            raise ValueError("CombinedDiscriminator needs at least one discriminator")
        self.discriminators = nn.ModuleList(discriminators)

    def forward(self, wav: torch.Tensor) -> Output:
        logits, features = [], []
        for disc in self.discriminators:
            part_logits, part_features = disc(wav)
            logits.extend(part_logits)
            features.extend(part_features)
        return logits, features


DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "msstft": MultiScaleSTFTDiscriminator,
    "mpd": MultiPeriodDiscriminator,
    "mbd": MultiBandDiscriminator,
}


def make_discriminator(
    name: str, channels: int = 1, filters: int | None = None, **options
) -> nn.Module:
    """Build the discriminator called `name` ("msstft", "mpd" or "mbd") for audio with
    `channels` channels; `filters` (the width of its first layers; default 32) and any other
    keyword go to its constructor."""
    if name not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator {name!r}; choose from {sorted(DISCRIMINATORS)}")
    if filters is not None:
        options["filters"] = filters
    return DISCRIMINATORS[name](channels=channels, **options)


def make_discriminators(names: Sequence[str], channels: int = 1, **options) -> nn.Module:
    """One discriminator, or a `CombinedDiscriminator` of several, by name; `options` (such as
    `filters`) go to every one of them."""
    parts = [make_discriminator(name, channels, **options) for name in names]
    return parts[0] if len(parts) == 1 else CombinedDiscriminator(parts)
