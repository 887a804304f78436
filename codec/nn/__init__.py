"""Neural network blocks: streamable convolutions, the SEANet, DAC and frame-rate (ConvNeXt +
STFT) encoders/decoders, and the conversion of a loaded model for fast CPU inference."""

from codec.nn.activations import Snake, make_activation
from codec.nn.conv import LSTM, Conv1d, ConvTranspose1d, fold_weight_norm
from codec.nn.dac import DACDecoder, DACEncoder
from codec.nn.inference import cpu_isa, for_cpu_inference, native_bf16
from codec.nn.seanet import SEANetDecoder, SEANetEncoder
from codec.nn.streaming import (
    State,
    StreamingModule,
    get_streaming_state,
    load_state_tensors,
    reset_streaming,
    set_streaming_state,
    state_tensors,
    streaming,
)
from codec.nn.vocos import ISTFTDecoder, STFTEncoder

__all__ = [
    "LSTM",
    "DACDecoder",
    "DACEncoder",
    "Conv1d",
    "ConvTranspose1d",
    "ISTFTDecoder",
    "SEANetDecoder",
    "SEANetEncoder",
    "STFTEncoder",
    "Snake",
    "State",
    "StreamingModule",
    "cpu_isa",
    "fold_weight_norm",
    "for_cpu_inference",
    "get_streaming_state",
    "load_state_tensors",
    "make_activation",
    "native_bf16",
    "reset_streaming",
    "set_streaming_state",
    "state_tensors",
    "streaming",
]
