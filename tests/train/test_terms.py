"""The generator's loss terms by name (codec/train/terms.py)."""

import pytest
import torch

from codec.train.config import compose_config
from codec.train.terms import active_weights, reconstruction_terms


@pytest.fixture(scope="module")
def terms():
    return reconstruction_terms(compose_config([]).loss, 16000, torch.device("cpu"))


def test_every_weight_of_the_loss_group_names_a_term(terms):
    weights = dict(compose_config([]).loss.weights)
    assert set(weights) == set(terms) | {"adv", "feat"}
    reference = torch.randn(2, 1, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    estimate = reference + 0.05 * torch.randn_like(reference)
    for name, term in terms.items():
        value = term(estimate, reference)
        assert value.ndim == 0 and torch.isfinite(value), name
        assert float(term(estimate, reference)) == float(value), name  # no state between calls


def test_only_weighted_terms_run_and_a_misspelt_one_is_refused(terms):
    weights = {"mel": 2, "l1": 0, "stoi": 0.5, "adv": 4, "feat": 4}
    assert active_weights(weights, terms, adversarial=False) == {"mel": 2.0, "stoi": 0.5}
    assert active_weights(weights, terms, adversarial=True)["adv"] == 4.0
    with pytest.raises(ValueError, match="loss.weights.mell: no such loss term"):
        active_weights({"mell": 1}, terms, adversarial=True)
