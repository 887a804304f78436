"""Neural network blocks: streamable convolutions and the SEANet encoder/decoder."""

from codec.nn.activations import Snake, make_activation
from codec.nn.conv import (
    LSTM,
    Conv1d,
    ConvTranspose1d,
    fold_weight_norm,
    reset_streaming,
    streaming,
)
from codec.nn.seanet import SEANetDecoder, SEANetEncoder

__all__ = [
    "LSTM",
    "Conv1d",
    "ConvTranspose1d",
    "SEANetDecoder",
    "SEANetEncoder",
    "Snake",
    "fold_weight_norm",
    "make_activation",
    "reset_streaming",
    "streaming",
]
