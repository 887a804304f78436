"""Vector quantizers with the interface of vector-quantize-pytorch's residual_vq.py."""

from codec.quantize.codebook import Codebook
from codec.quantize.errors import NonFiniteInputError
from codec.quantize.residual import GroupedResidualVQ, ResidualVQ
from codec.quantize.vector_quantize import VectorQuantize

__all__ = [
    "Codebook",
    "GroupedResidualVQ",
    "NonFiniteInputError",
    "ResidualVQ",
    "VectorQuantize",
]
