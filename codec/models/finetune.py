"""A saved model to train further (the trainer's `init_from` and `init_changes`): loaded with
its own architecture and weights, and rebuilt with changes to its settings where asked.

    load_for_training("runs/speech16k/model", {"quantizer": {"threshold_ema_dead_code": 0}})

A change keeps every weight and codebook statistic: a training setting of a part
(quantizer.threshold_ema_dead_code), or a SEANet made deeper (encoder.n_residual_layers=2),
whose new residual units start next to the identity (codec.models.deepen). A change of the
architecture itself is refused by name.
"""

from __future__ import annotations

from codec.errors import first_line
from codec.models.codec import Codec
from codec.models.deepen import deepen_seanet, is_deepening
from codec.models.names import resolve_model


def load_for_training(folder, changes: dict | None = None) -> Codec:
    """The model saved in `folder` (or a shipped or imported model's name), weight norm kept,
    in train mode; with `changes` (nested part settings) rebuilt by `with_changes`."""
    model = Codec.from_pretrained(resolve_model(folder), inference=False)
    if changes:
        model = with_changes(model, changes, folder)
    return model.train()


def with_changes(model: Codec, changes: dict, source) -> Codec:
    """`model` rebuilt from its config with `changes` merged in, its weights and codebook
    statistics kept; ValueError naming `source` when a change alters the architecture."""
    changed = Codec(model.config.replace(**changes))
    before, after = model.config.to_dict(), changed.config.to_dict()
    deeper = [kind for kind in ("encoder", "decoder") if is_deepening(before[kind], after[kind])]

    def copied(key: str) -> bool:  # by load_state_dict, not by deepen_seanet
        return key.split(".")[0] not in deeper

    try:
        for kind in deeper:
            deepen_seanet(getattr(model, kind), getattr(changed, kind))
        kept = {k: v for k, v in model.state_dict().items() if copied(k)}
        result = changed.load_state_dict(kept, strict=False)
        unmatched = result.unexpected_keys + [k for k in result.missing_keys if copied(k)]
        if unmatched:
            raise RuntimeError(f"no counterpart for {unmatched[0]}")
    except (RuntimeError, ValueError) as err:
        raise ValueError(
            f"init_changes {changes} change the architecture of {source} ({first_line(err)})"
        ) from None
    return changed
