"""Recording-chain augmentation: each step does what it says on real speech, draws are
reproducible, nothing clips or goes non-finite, and the config group builds it."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from codec.audio import read_for
from codec.train.augment import RecordingChain, build_augment

RATE = 16000
OFF = dict(p_eq=0, p_band=0, p_resample=0, p_room=0, p_noise=0, p_level=0)


@pytest.fixture
def speech(fsdd_root):
    paths = sorted(fsdd_root.glob("*_nicolas_*.wav"))[:6]
    wav = torch.cat([read_for(p, RATE, 1) for p in paths], -1)
    return wav + 1e-3 * torch.randn_like(wav)  # FSDD is 8 kHz: something above 4 kHz


def power_above(wav, hz):
    spec = torch.fft.rfft(wav.double()).abs().pow(2)
    freqs = torch.fft.rfftfreq(wav.shape[-1], 1 / RATE)
    return float(spec[..., freqs > hz].sum() / spec.sum())


def test_draws_are_reproducible_and_the_result_is_finite_and_unclipped(speech):
    chain = RecordingChain(p_eq=1, p_band=1, p_resample=1, p_room=1, p_noise=1, p_level=1)
    loud = speech / speech.abs().max()
    a = chain(loud, RATE, np.random.default_rng([0, 1, 2]))
    b = chain(loud, RATE, np.random.default_rng([0, 1, 2]))
    c = chain(loud, RATE, np.random.default_rng([0, 1, 3]))
    assert torch.equal(a, b) and not torch.equal(a, c)
    for out in (a, c):
        assert out.shape == loud.shape and out.dtype == torch.float32
        assert torch.isfinite(out).all() and out.abs().max() <= 0.99 + 1e-6


def test_off_is_the_identity(speech):
    out = RecordingChain(**OFF)(speech, RATE, np.random.default_rng(0))
    assert torch.allclose(out, speech)


def test_resampling_chains_and_band_limits_remove_the_top_band(speech):
    rng = np.random.default_rng(0)
    telephone = RecordingChain(**(OFF | dict(p_resample=1, resample_rates=(8000,))))
    assert power_above(telephone(speech, RATE, rng), 4000) < 0.01 * power_above(speech, 4000)
    band = RecordingChain(**(OFF | dict(p_band=1, lowpass_hz=(3400.0, 3400.0))))
    assert power_above(band(speech, RATE, rng), 6000) < 0.05 * power_above(speech, 6000)


def test_noise_lands_at_its_snr_and_level_and_room_keep_their_promises(speech):
    rng = np.random.default_rng(0)
    noisy = RecordingChain(**(OFF | dict(p_noise=1, snr_db=(20.0, 20.0))))(speech, RATE, rng)
    snr = 10 * torch.log10(speech.pow(2).mean() / (noisy - speech).pow(2).mean())
    assert abs(float(snr) - 20.0) < 0.1
    quieter = RecordingChain(**(OFF | dict(p_level=1, level_db=(-6.0, -6.0))))(speech, RATE, rng)
    assert torch.allclose(quieter, speech * 10 ** (-6 / 20), atol=1e-6)
    room = RecordingChain(**(OFF | dict(p_room=1, rt60_s=(0.5, 0.5))))(speech, RATE, rng)
    assert torch.allclose(room.pow(2).mean(), speech.pow(2).mean(), rtol=1e-3)
    assert float((room - speech).pow(2).mean() / speech.pow(2).mean()) > 0.01


def test_the_config_group_builds_it():
    assert build_augment(None) is None
    assert build_augment(OmegaConf.create({"name": "none"})) is None
    cfg = OmegaConf.load("configs/augment/recording_chain.yaml")
    chain = build_augment(cfg)
    assert chain == RecordingChain()  # the YAML states the defaults
    with pytest.raises(ValueError, match="recording_chain.*p_reverb"):
        build_augment(OmegaConf.create({"name": "recording_chain", "p_reverb": 1}))
    with pytest.raises(ValueError, match="augment must be"):
        build_augment(OmegaConf.create({"name": "telephone"}))


def test_training_with_augmentation_runs(tmp_path, tiny_train_overrides):
    from codec.train import main

    run = tmp_path / "run"
    main([*tiny_train_overrides, "augment=recording_chain", "trainer.steps=2", f"run_dir={run}"])
    assert (run / "model" / "config.json").is_file()
    assert OmegaConf.load(run / "config.yaml").augment.name == "recording_chain"
