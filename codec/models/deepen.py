"""A trained SEANet made deeper while keeping what it computes: more residual units per stage
(`n_residual_layers`), each new unit starting next to the identity, so that fine-tuning adds
capacity to a model without training it from scratch.

A new unit's shortcut is the identity matrix and its block's output conv has weights of norm
`START_GAIN` per output channel (zero without weight norm), so the unit adds almost nothing at
first. Not exactly zero under weight norm: w = g v / |v| gives v no gradient while g = 0, and g
alone (one number per channel, its gradient a projection on a random direction) barely moves:
measured on the speech16k model, zero gains reached 0.001-0.003 in 4,000 steps of Adam at
1e-4; gains started at 0.001 or 0.05 stayed at 0.0006-0.0013 (1,000 steps) and 0.041-0.050
(3,000 steps): what the new units learn is mostly their directions.

The old layers keep their weights: in each `model` Sequential the new units come right after a
stage's old ones, so old and new layers match in order.
"""

from __future__ import annotations

import torch
from torch import nn

from codec.nn.conv import set_weight
from codec.nn.seanet import ResidualUnit, SEANet

DEEPENING = "n_residual_layers"
START_GAIN = 1e-3


def is_deepening(old: dict, new: dict) -> bool:
    """Whether part config `new` is `old` with only more residual units per stage."""
    return (
        old.get("name") == new.get("name") == "seanet"
        and new.get(DEEPENING, 1) > old.get(DEEPENING, 1)
        and {k: v for k, v in old.items() if k != DEEPENING}
        == {k: v for k, v in new.items() if k != DEEPENING}
    )


def deepen_seanet(old: SEANet, new: SEANet) -> None:
    """Copy `old`'s layers into the deeper `new` (built from the same options with more residual
    units), and start every unit that `old` lacks next to the identity."""
    fresh = list(new.model)
    at = 0
    for layer in old.model:
        while type(fresh[at]) is not type(layer) or _shapes(fresh[at]) != _shapes(layer):
            _start_new_unit(fresh[at])
            at += 1
        fresh[at].load_state_dict(layer.state_dict())
        at += 1
    for layer in fresh[at:]:
        _start_new_unit(layer)


def _shapes(module: nn.Module) -> list[tuple]:
    return [tuple(t.shape) for t in module.state_dict().values()]


@torch.no_grad()
def _start_new_unit(unit: nn.Module) -> None:
    if not isinstance(unit, ResidualUnit):
        raise ValueError(f"cannot deepen: a {type(unit).__name__} has no counterpart to copy")
    if not isinstance(unit.shortcut, nn.Identity):
        _set_conv(unit.shortcut.conv, torch.eye(unit.shortcut.conv.out_channels)[..., None])
    out = unit.block[-1].conv
    _set_conv(out, None)


def _set_conv(conv: nn.Conv1d, weight: torch.Tensor | None) -> None:
    """Set `conv` to `weight` with zero bias, through its weight norm; None: a random direction
    of norm START_GAIN per output channel (zero weights without weight norm)."""
    conv.bias.zero_()
    norms = getattr(conv, "parametrizations", None)
    if weight is not None or norms is None:
        set_weight(conv, weight if weight is not None else torch.zeros_like(conv.weight))
    else:
        norms.weight.original0.fill_(START_GAIN)
