"""The parts a Codec is assembled from, by name.

Each registry entry pairs a part's settings (an `Options` dataclass, checked on load) with the
function that builds the module. Adding an architecture is one module in codec/nn/, one entry
here and one file in configs/model/{encoder,decoder,quantizer}/.

Every encoder maps (b, channels, t) -> (b, dimension, ceil(t / hop_length)) and exposes
`hop_length`, `causal` and `pad_mode` ("zeros" or "reflect": how it pads a signal's ends, which
tells whether files zero-padded side by side in a batch code as they do alone); every decoder
maps (b, dimension, f) -> (b, channels, f * hop_length) (or fewer samples, DAC 1.0's, reported
by its `output_length(f)`; the Codec pads the rest with zeros) and exposes `hop_length`,
`causal` and `pad_mode`; every quantizer has the GroupedResidualVQ interface (the Codec calls
its typed `quantize` and `decode`, codec/quantize/residual.py). A part whose layers are
weight-normed says, in its options' `folded()`, how it is described once that is folded into
plain weights (a loaded model's), so that a folded model saves a config that builds it again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from codec import limits
from codec.models.options import ConfigError, Options, bounded
from codec.nn import (
    DACDecoder,
    DACEncoder,
    ISTFTDecoder,
    SEANetDecoder,
    SEANetEncoder,
    STFTEncoder,
)
from codec.quantize import GroupedResidualVQ


@dataclass
class SEANetOptions(Options):
    """SEANet (SoundStream, EnCodec). Defaults: EnCodec's 24 kHz architecture."""

    n_filters: int = bounded(32, range=(1, 4096))
    ratios: list[int] = bounded([8, 5, 4, 2], range=(1, 64), length=(1, 8))
    n_residual_layers: int = bounded(1, range=(0, 16))
    kernel_size: int = bounded(7, range=(1, 63))
    residual_kernel_size: int = bounded(3, range=(1, 63))
    last_kernel_size: int = bounded(7, range=(1, 511))  # long when an output filter is folded in
    dilation_base: int = bounded(2, range=(1, 8))
    compress: int = bounded(2, range=(1, 64))
    lstm: int = bounded(2, range=(0, 8))
    causal: bool = False
    activation: str = bounded("elu", choices=("elu", "snake"))
    norm: str = bounded("weight_norm", choices=("weight_norm", "none", "time_group_norm"))
    pad_mode: str = bounded("reflect", choices=("reflect", "zeros"))
    true_skip: bool = False

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)

    def folded(self) -> SEANetOptions:
        return dataclasses.replace(self, norm="none") if self.norm == "weight_norm" else self


@dataclass
class DACEncoderOptions(Options):
    """DAC's encoder (codec/nn/dac.py). Defaults: DAC 44 kHz (encoder_dim 64)."""

    n_filters: int = bounded(64, range=(1, 4096))
    rates: list[int] = bounded([2, 4, 8, 8], range=(1, 64), length=(1, 8))
    norm: str = bounded("weight_norm", choices=("weight_norm", "none"))

    def folded(self) -> DACEncoderOptions:
        return dataclasses.replace(self, norm="none")


@dataclass
class DACDecoderOptions(Options):
    """DAC's decoder (codec/nn/dac.py). Defaults: DAC 44 kHz (decoder_dim 1536). Without
    `output_padding` (DAC 1.0) each odd rate loses one sample, which the Codec pads back."""

    n_filters: int = bounded(1536, range=(1, 8192))
    rates: list[int] = bounded([8, 8, 4, 2], range=(1, 64), length=(1, 8))
    output_padding: bool = False
    norm: str = bounded("weight_norm", choices=("weight_norm", "none"))

    def validate(self, where: str) -> None:
        if self.n_filters % 2 ** len(self.rates):
            raise ConfigError(f"{where}.n_filters must be a multiple of 2 ** len(rates)")

    def folded(self) -> DACDecoderOptions:
        return dataclasses.replace(self, norm="none")


@dataclass
class ConvNeXtSTFTOptions(Options):
    """The frame-rate encoder and decoder (codec/nn/vocos.py): ConvNeXt blocks at the frame
    rate, an STFT at istft_hop on the waveform side."""

    n_filters: int = bounded(256, range=(1, 4096))  # ConvNeXt width
    hidden: int = bounded(768, range=(1, 16384))  # ConvNeXt inner width
    n_blocks: int = bounded(8, range=(0, 64))
    kernel_size: int = bounded(7, range=(1, 63))
    hop_length: int = bounded(320, range=(1, 1 << 16))
    istft_hop: int = bounded(160, range=(1, 1 << 16))
    n_fft: int = bounded(640, range=(2, 1 << 16))
    causal: bool = False

    def validate(self, where: str) -> None:
        if self.hop_length % self.istft_hop:
            raise ConfigError(f"{where}.hop_length must be a multiple of istft_hop")
        if self.n_fft % self.istft_hop or self.n_fft % 2:
            raise ConfigError(f"{where}.n_fft must be even and a multiple of istft_hop")


@dataclass
class GRVQOptions(Options):
    """Grouped residual VQ (codec.quantize.GroupedResidualVQ) and its codebook options."""

    groups: int = bounded(1, range=(limits.MIN_GROUPS, limits.MAX_GROUPS))
    levels: int = bounded(32, range=(limits.MIN_LEVELS, limits.MAX_LEVELS))
    codebook_size: int = bounded(1024, range=(limits.MIN_CODEBOOK_SIZE, limits.MAX_CODEBOOK_SIZE))
    codebook_dim: int | None = bounded(None, range=(1, 8192))
    decay: float = bounded(0.99, range=(0.0, 0.999999))
    eps: float = bounded(1e-5, range=(0.0, 1.0))
    kmeans_init: bool = True
    kmeans_iters: int = bounded(50, range=(1, 1000))
    threshold_ema_dead_code: float = bounded(2.0, range=(0.0, 1e9))
    use_cosine_sim: bool = False
    ema_update: bool = True
    learnable_codebook: bool = False
    shared_codebook: bool = False
    rotation_trick: bool = False
    commitment_weight: float = bounded(1.0, range=(0.0, 1e6))
    quantize_dropout: bool = True
    quantize_dropout_cutoff_index: int = bounded(0, range=(0, limits.MAX_LEVELS - 1))
    quantize_dropout_multiple_of: int = bounded(1, range=(1, limits.MAX_LEVELS))
    quantize_dropout_per_item: bool = False
    quantize_dropout_prob: float = bounded(1.0, range=(0.0, 1.0))
    search_precision: str = bounded("float32", choices=("float32", "bfloat16"))
    factorized: bool = False  # DAC's codes (codec/quantize/factorized.py); needs codebook_dim
    # factorized with a learnable codebook: the weight of mse(sg(z_e), code) (DAC: 1)
    codebook_weight: float = bounded(1.0, range=(0.0, 1e6))

    def validate(self, where: str) -> None:
        if self.quantize_dropout_cutoff_index >= self.levels:
            raise ConfigError(f"{where}.quantize_dropout_cutoff_index must be below levels")
        if self.factorized:
            if self.codebook_dim is None:
                raise ConfigError(f"{where}.factorized needs codebook_dim (DAC: 8)")
            if self.use_cosine_sim or self.rotation_trick:
                raise ConfigError(
                    f"{where}.factorized searches L2-normalised codes itself: "
                    "use_cosine_sim and rotation_trick must be false"
                )


@dataclass(frozen=True)
class Part:
    options: type[Options]
    build: Callable  # (options, config: CodecConfig) -> nn.Module


def _encoder_or_decoder(cls):
    """A builder of an encoder or decoder class taking channels, dimension and its options."""

    def build(options: Options, config) -> nn.Module:
        settings = options.to_dict()
        return cls(channels=config.channels, dimension=config.dimension, **settings)

    return build


def _grvq(options: GRVQOptions, config) -> nn.Module:
    settings = options.to_dict()
    levels = settings.pop("levels")
    if config.dimension % options.groups:
        raise ConfigError("dimension must be a multiple of quantizer.groups")
    return GroupedResidualVQ(dim=config.dimension, num_quantizers=levels, **settings)


ENCODERS: dict[str, Part] = {
    "seanet": Part(SEANetOptions, _encoder_or_decoder(SEANetEncoder)),
    "dac": Part(DACEncoderOptions, _encoder_or_decoder(DACEncoder)),
    "stft": Part(ConvNeXtSTFTOptions, _encoder_or_decoder(STFTEncoder)),
}
DECODERS: dict[str, Part] = {
    "seanet": Part(SEANetOptions, _encoder_or_decoder(SEANetDecoder)),
    "dac": Part(DACDecoderOptions, _encoder_or_decoder(DACDecoder)),
    "istft": Part(ConvNeXtSTFTOptions, _encoder_or_decoder(ISTFTDecoder)),
}
QUANTIZERS: dict[str, Part] = {"grvq": Part(GRVQOptions, _grvq)}
REGISTRIES = {"encoder": ENCODERS, "decoder": DECODERS, "quantizer": QUANTIZERS}


def part_options(kind: str, data) -> tuple[str, Options]:
    """A config section {"name": ..., **settings} -> (name, checked options)."""
    registry = REGISTRIES[kind]
    if not isinstance(data, dict):
        raise ConfigError(f"{kind} must be an object with a name")
    settings = dict(data)
    name = settings.pop("name", None)
    if name not in registry:
        raise ConfigError(f"{kind}.name must be one of {', '.join(registry)}, got {name!r}")
    return name, registry[name].options.from_dict(settings, kind)


def build_part(kind: str, name: str, options: Options, config) -> nn.Module:
    return REGISTRIES[kind][name].build(options, config)
