"""Ops that torch.export keeps whole, each with an ONNX counterpart (codec.runtime maps them).

torch.export decomposes nn.LSTM into one step per time step, so its graph fixes the sequence
length; `lstm_layer` stands for one LSTM layer over a sequence of any length, in ONNX's
layout (gates i, o, f, c). The CPU implementation here is the reference that defines it;
layers call it only while exporting (`torch.compiler.is_exporting()`).
"""

from __future__ import annotations

import torch
from torch import nn

# PyTorch's gate order (i, f, g, o) -> ONNX's (i, o, f, c)
_ONNX_GATES = (0, 3, 1, 2)


@torch.library.custom_op("codec::lstm_layer", mutates_args=())
def lstm_layer(
    x: torch.Tensor,
    h: torch.Tensor,
    c: torch.Tensor,
    w: torch.Tensor,
    r: torch.Tensor,
    bias: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One LSTM layer: x (b, t, i), h and c (b, hidden), w (4 hidden, i), r (4 hidden,
    hidden), bias (8 hidden: the input biases, then the recurrent ones), gates in ONNX order
    -> (outputs (b, t, hidden), last h, last c)."""
    hidden = h.shape[-1]
    projected = x @ w.t() + bias[: 4 * hidden] + bias[4 * hidden :]
    outputs = []
    for step in range(x.shape[1]):
        i, o, f, g = (projected[:, step] + h @ r.t()).split(hidden, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, 1), h, c


@lstm_layer.register_fake
def _(x, h, c, w, r, bias):
    return (
        x.new_empty(x.shape[0], x.shape[1], h.shape[-1]),
        torch.empty_like(h),
        torch.empty_like(c),
    )


def _packed(x: torch.Tensor) -> torch.Tensor:
    """A contiguous copy made without asking whether x is contiguous (torch.export would
    answer by fixing a size of 1)."""
    return x.clone(memory_format=torch.contiguous_format)


def _onnx_order(weight: torch.Tensor) -> torch.Tensor:
    chunks = weight.chunk(4)
    return torch.cat([chunks[j] for j in _ONNX_GATES])


def exportable_lstm(lstm: nn.LSTM, seq: torch.Tensor, state):
    """nn.LSTM(seq, state) through `lstm_layer`, layer by layer: seq (b, t, c) batch first,
    state (h, c) each (layers, b, hidden) or None -> (outputs (b, t, hidden), (h, c))."""
    b = seq.shape[0]
    if state is None:
        zeros = seq.new_zeros(lstm.num_layers, b, lstm.hidden_size)
        state = (zeros, zeros)
    x, hs, cs = _packed(seq), [], []
    for k in range(lstm.num_layers):
        w, r = (_onnx_order(getattr(lstm, f"weight_{n}_l{k}")) for n in ("ih", "hh"))
        bias = torch.cat([_onnx_order(getattr(lstm, f"bias_{n}_l{k}")) for n in ("ih", "hh")])
        x, h, c = lstm_layer(x, _packed(state[0][k]), _packed(state[1][k]), w, r, bias)
        hs.append(h)
        cs.append(c)
    return x, (torch.stack(hs), torch.stack(cs))
