"""Codec models: a nested config naming an encoder, a quantizer and a decoder; the builders
that assemble them; model folders; importers of other codecs' checkpoints."""

from codec.models.codec import Codec
from codec.models.config import CodecConfig
from codec.models.folder import ModelFormatError
from codec.models.options import ConfigError

__all__ = ["Codec", "CodecConfig", "ConfigError", "ModelFormatError"]
