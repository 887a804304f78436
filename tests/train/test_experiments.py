"""The Hydra configs: every experiment and model file composes into the model it is known for
(tests/fixtures/experiment_models.json), and a part swapped on top of any of them starts from
its own defaults, keeping only what was set on its slot.

After an intended change to a model's settings, rewrite the fixture with
`python tests/train/test_experiments.py` and review its diff."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from codec.models import CodecConfig
from codec.train.config import compose_config, config_dir

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "experiment_models.json"


def _names(group: str) -> list[str]:
    with config_dir() as folder:
        return sorted(p.stem for p in (folder / group).glob("*.yaml"))


SETUPS = [f"experiment={name}" for name in _names("experiment")] + [
    f"model={name}" for name in _names("model")
]


@functools.cache
def composed(*overrides: str) -> dict:
    """The model config of configs/ with `overrides`, checked and with every setting spelt
    (composed once per set of overrides; the tests only read it)."""
    cfg = compose_config(list(overrides))
    return CodecConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True)).to_dict()


def _option(kind: str, name: str) -> dict:
    """The settings a part's group file gives on its own."""
    return composed(f"model/{kind}={name}")[kind]


@pytest.mark.parametrize("setup", SETUPS)
def test_every_setup_composes_into_its_known_model(setup):
    assert composed(setup) == json.loads(FIXTURE.read_text())[setup]


@pytest.mark.parametrize("setup", [s for s in SETUPS if s.startswith("experiment=")])
def test_a_swapped_part_starts_from_its_own_defaults(setup):
    model = composed(setup)
    for kind, plain, other in (("encoder", "seanet", "stft"), ("decoder", "seanet", "istft")):
        swap = other if model[kind]["name"] == plain else plain
        swapped = composed(setup, f"model/{kind}={swap}")[kind]
        own = _option(kind, swap)
        differs = {k for k in own if swapped[k] != own[k]}
        assert differs <= {"causal"}, (kind, swap, {k: swapped[k] for k in differs})
        assert swapped.get("causal", False) == model[kind].get("causal", False)


def test_a_slot_setting_applies_to_the_part_that_fills_it():
    decoder = composed("experiment=speech16k_cpu_causal", "model/decoder=istft")["decoder"]
    assert decoder == _option("decoder", "istft") | {"causal": True}
    decoder = composed("experiment=speech16k_cpu", "model/decoder=istft")["decoder"]
    assert decoder == _option("decoder", "istft")


if __name__ == "__main__":  # rewrite the fixture from the configs as they are
    FIXTURE.write_text(json.dumps({s: composed(s) for s in SETUPS}, indent=1, sort_keys=True))
    print(f"wrote {FIXTURE} ({len(SETUPS)} setups)", file=sys.stderr)
