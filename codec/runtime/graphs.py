"""The modules that are exported: a Codec's encoder and decoder with the quantizer's search and
lookup inside, for whole files and as streaming steps with the state in and out.

    EncoderGraph(model, levels)   audio (b, c, t) -> codes (b, g, levels, ceil(t / hop)), int64
    DecoderGraph(model)           codes (b, g, L, f), L <= levels -> audio (b, c, f * hop)
    StepGraph(graph, names)       (input, *state) -> (output, *new state), one call of a
                                  stream of whole frames; `names` are the state tensors'
                                  flat names (codec.nn.state_tensors), in order

A step graph is traced while its inner graph streams (codec.nn.streaming), so every streaming
layer reads its state from the inputs and leaves the new one in the outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codec.models.codec import Codec
from codec.nn import load_state_tensors, state_tensors
from codec.quantize.traced import CodeSum, NearestCodes


class EncoderGraph(nn.Module):
    """audio (b, c, t) -> codes (b, g, levels, ceil(t / hop)), the first `levels` levels."""

    def __init__(self, model: Codec, levels: int):
        super().__init__()
        self.encoder = model.encoder
        self.search = NearestCodes(model.quantizer, levels)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        latents = self.encoder(audio.float())  # (b, d, f)
        return self.search(latents.float().transpose(1, 2))


class DecoderGraph(nn.Module):
    """codes (b, g, L, f) of the first L levels (-1: a dropped level) -> audio
    (b, c, f * hop); a decoder that gives fewer samples (DAC 1.0's) is padded with zeros."""

    def __init__(self, model: Codec):
        super().__init__()
        self.decoder, self.hop_length = model.decoder, model.hop_length
        self.lookup = CodeSum(model.quantizer)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        latents = self.lookup(codes).transpose(1, 2)  # (b, dim, f)
        # a copy, not a view of (b, f, dim) memory: layers asking for its layout would make
        # torch.export fix the batch size
        audio = self.decoder(latents.clone(memory_format=torch.contiguous_format)).float()
        missing = codes.shape[-1] * self.hop_length - audio.shape[-1]
        return F.pad(audio, (0, missing))


class StepGraph(nn.Module):
    """(input, *state) -> (output, *new state): `graph` on one chunk of whole frames, its
    streaming layers' state tensors (flat names `names`) passed in and returned."""

    def __init__(self, graph: nn.Module, names: list[str]):
        super().__init__()
        self.inner, self.names = graph, list(names)  # not .graph: fx's GraphModule has one

    def forward(self, x: torch.Tensor, *state: torch.Tensor):
        load_state_tensors(self.inner, dict(zip(self.names, state)))
        y = self.inner(x)
        new = state_tensors(self.inner)
        return (y, *(new[name] for name in self.names))
