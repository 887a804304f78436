"""Vector quantizers: the residual engine (ResidualQuantizer, typed) and facades with the
interface of vector-quantize-pytorch's residual_vq.py."""

from codec.quantize.codebook import Codebook
from codec.quantize.errors import NonFiniteInputError
from codec.quantize.facades import GroupedResidualVQ, ResidualVQ
from codec.quantize.options import ResidualOptions
from codec.quantize.residual import ResidualQuantizer
from codec.quantize.result import QuantizedResult
from codec.quantize.vector_quantize import VectorQuantize

__all__ = [
    "Codebook",
    "GroupedResidualVQ",
    "NonFiniteInputError",
    "QuantizedResult",
    "ResidualOptions",
    "ResidualQuantizer",
    "ResidualVQ",
    "VectorQuantize",
]
