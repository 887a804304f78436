"""What a Codec is built from: a nested config naming each part.

    {"sample_rate": 24000, "channels": 1, "dimension": 128,
     "encoder": {"name": "seanet", ...}, "decoder": {"name": "seanet", ...},
     "quantizer": {"name": "grvq", "groups": 1, "levels": 32, "codebook_size": 1024, ...},
     "segment": null, "loudness_lufs": null, "model_id": "..."}

Folders saved before parts had names hold one flat SEANet config; `upgrade_flat` reads them
with their behaviour kept (a causal model then pads with zeros, as it did).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from codec import limits
from codec.models.builders import part_options
from codec.models.options import ConfigError, Options, bounded, check_fields

CONFIG_VERSION = 2


@dataclass
class SegmentOptions(Options):
    """Fixed-length segments coded independently (EnCodec 48 kHz): each `seconds` long,
    overlapping by `overlap` (a fraction), joined by linear overlap-add; with `normalize`
    each is divided by its RMS (+1e-8) before encoding and multiplied back after decoding."""

    seconds: float = bounded(1.0, range=(0.01, 600.0))
    overlap: float = bounded(0.01, range=(0.0, 0.5))
    normalize: bool = True


@dataclass
class CodecConfig:
    sample_rate: int = bounded(24_000, range=(limits.MIN_SAMPLE_RATE, limits.MAX_SAMPLE_RATE))
    channels: int = bounded(1, range=(limits.MIN_CHANNELS, limits.MAX_CHANNELS))
    dimension: int = bounded(128, range=(limits.MIN_DIMENSION, limits.MAX_DIMENSION))
    encoder: dict = field(default_factory=lambda: {"name": "seanet"})
    decoder: dict = field(default_factory=lambda: {"name": "seanet"})
    quantizer: dict = field(default_factory=lambda: {"name": "grvq"})
    segment: dict | None = None
    # normalise input loudness to this target (LUFS), restore on decode
    loudness_lufs: float | None = bounded(None, range=(-70, 0))
    model_id: str = bounded("codec", length=(1, 256))

    def __post_init__(self):
        self._parts: dict = {}
        self._segment: SegmentOptions | None = None
        self.validate()

    # -- parts ---------------------------------------------------------------------------------

    def part(self, kind: str):
        """(name, checked options) of "encoder", "decoder" or "quantizer"."""
        return self._parts[kind]

    @property
    def quantizer_options(self):
        return self._parts["quantizer"][1]

    @property
    def segment_options(self) -> SegmentOptions | None:
        return self._segment

    def replace(self, **changes) -> CodecConfig:
        """A copy with top-level fields changed; part sections are merged key by key:
        `config.replace(encoder={"causal": True})`."""
        data = self.to_dict()
        for key, value in changes.items():
            if key in ("encoder", "decoder", "quantizer") and isinstance(value, dict):
                data[key] = data[key] | value
            else:
                data[key] = value
        return CodecConfig.from_dict(data)

    def folded(self) -> CodecConfig:
        """This config for the model once its weight norm is folded into plain weights: each
        part describes its folded self (Options.folded)."""
        data = self.to_dict()
        for kind in ("encoder", "decoder", "quantizer"):
            name, options = self._parts[kind]
            data[kind] = {"name": name} | options.folded().to_dict()
        return CodecConfig.from_dict(data)

    # -- reading and writing -------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data) -> CodecConfig:
        if not isinstance(data, dict):
            raise ConfigError("model config must be a JSON object")
        data = dict(data)
        data.pop("version", None)
        if "encoder" not in data:
            data = upgrade_flat(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config fields: {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict:
        """Every part with all its settings spelt out (defaults included)."""
        out = {"version": CONFIG_VERSION}
        for f in dataclasses.fields(self):
            out[f.name] = getattr(self, f.name)
        for kind in ("encoder", "decoder", "quantizer"):
            name, options = self._parts[kind]
            out[kind] = {"name": name} | options.to_dict()
        if self._segment is not None:
            out["segment"] = self._segment.to_dict()
        return out

    def validate(self) -> None:
        """Raise ConfigError naming the first field of the wrong type or range."""
        scalars = ("sample_rate", "channels", "dimension", "loudness_lufs", "model_id")
        check_fields(CodecConfig, {name: getattr(self, name) for name in scalars})
        self._parts = {
            kind: part_options(kind, getattr(self, kind))
            for kind in ("encoder", "decoder", "quantizer")
        }
        self._segment = None
        if self.segment is not None:
            self._segment = SegmentOptions.from_dict(self.segment, "segment")
            if self.loudness_lufs is not None:
                raise ConfigError("loudness_lufs and segment cannot be combined")


# The flat config's fields, and which part each went to.
_FLAT_SEANET = (
    "n_filters",
    "ratios",
    "n_residual_layers",
    "kernel_size",
    "residual_kernel_size",
    "last_kernel_size",
    "dilation_base",
    "compress",
    "lstm",
    "causal",
    "activation",
    "norm",
    "pad_mode",
    "true_skip",
)
_FLAT_TOP = ("sample_rate", "channels", "dimension", "loudness_lufs", "model_id")


def _engine_defaults() -> dict:
    """The quantizer engine's own defaults (ResidualOptions) for the settings GRVQOptions
    names: what a flat config's partial `quantizer` object left unsaid meant."""
    from codec.models.builders import GRVQOptions
    from codec.quantize import ResidualOptions

    names = set(GRVQOptions.__dataclass_fields__)
    return {
        f.name: f.default
        for f in dataclasses.fields(ResidualOptions)
        if f.name in names and f.default is not dataclasses.MISSING
    }


def upgrade_flat(data: dict) -> dict:
    """A flat config (folders written before parts had names) -> the nested form, behaviour
    kept: the flat defaults where a field is absent, and zero padding for causal models (the
    flat model padded causal convs with zeros whatever its pad_mode said)."""
    from codec.models.builders import SEANetOptions

    data = dict(data)
    seanet = SEANetOptions().to_dict()  # the flat config's defaults are EnCodec's, as these
    for key in _FLAT_SEANET:
        if key in data:
            seanet[key] = data.pop(key)
    if seanet.get("causal") is True or seanet.get("pad_mode") == "constant":
        seanet["pad_mode"] = "zeros"
    quantizer = {"name": "grvq", "groups": 1, "levels": 32, "codebook_size": 1024}
    for key in ("groups", "levels", "codebook_size", "codebook_dim"):
        if key in data:
            quantizer[key] = data.pop(key)
    codebook = data.pop("quantizer", None)
    if codebook is None:
        codebook = {"decay": 0.99, "kmeans_init": True, "kmeans_iters": 50}
        codebook |= {"threshold_ema_dead_code": 2, "quantize_dropout": True}
    if not isinstance(codebook, dict):
        raise ConfigError("quantizer must be an object")
    quantizer = _engine_defaults() | quantizer | codebook
    nested = {key: data.pop(key) for key in _FLAT_TOP if key in data}
    if data:
        raise ConfigError(f"unknown config fields: {', '.join(sorted(data))}")
    seanet = {"name": "seanet"} | seanet
    return nested | {"encoder": seanet, "decoder": dict(seanet), "quantizer": quantizer}
