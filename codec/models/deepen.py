"""A trained SEANet made deeper without changing what it computes: more residual units per
stage (`n_residual_layers`), each new unit starting as the identity, so that fine-tuning adds
capacity to a model without training it from scratch.

A new unit's shortcut is the identity matrix and its block's output conv has weight-norm gain 0
(its direction stays random, so the gain's gradient is not zero and the unit learns). The old
layers keep their weights: in each `model` Sequential the new units come right after a stage's
old ones, so old and new layers match in order.
"""

from __future__ import annotations

import torch
from torch import nn

from codec.nn.seanet import ResidualUnit, SEANet

DEEPENING = "n_residual_layers"


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
    units) and make every unit that `old` lacks the identity."""
    fresh = list(new.model)
    at = 0
    for layer in old.model:
        while type(fresh[at]) is not type(layer) or _shapes(fresh[at]) != _shapes(layer):
            _make_identity(fresh[at])
            at += 1
        fresh[at].load_state_dict(layer.state_dict())
        at += 1
    for layer in fresh[at:]:
        _make_identity(layer)


def _shapes(module: nn.Module) -> list[tuple]:
    return [tuple(t.shape) for t in module.state_dict().values()]


@torch.no_grad()
def _make_identity(unit: nn.Module) -> None:
    if not isinstance(unit, ResidualUnit):
        raise ValueError(f"cannot deepen: a {type(unit).__name__} has no counterpart to copy")
    if not isinstance(unit.shortcut, nn.Identity):
        _set_conv(unit.shortcut.conv, torch.eye(unit.shortcut.conv.out_channels)[..., None])
    out = unit.block[-1].conv
    _set_conv(out, None)


def _set_conv(conv: nn.Conv1d, weight: torch.Tensor | None) -> None:
    """Set `conv` to `weight` (None: zero output) with zero bias, through its weight norm."""
    conv.bias.zero_()
    norms = getattr(conv, "parametrizations", None)
    if norms is None:
        conv.weight.copy_(weight if weight is not None else torch.zeros_like(conv.weight))
        return
    gain, direction = norms.weight.original0, norms.weight.original1
    if weight is None:
        gain.zero_()
    else:
        direction.copy_(weight)
        gain.copy_(weight.flatten(1).norm(dim=1).view_as(gain))
