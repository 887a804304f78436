"""Reconstruction and adversarial losses, and the gradient balancer."""

import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from codec.losses import (
    Balancer,
    MelLevelLoss,
    MelLoss,
    MultiResolutionSTFTLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
    negative_si_sdr,
    waveform_l1,
)


@pytest.mark.parametrize(
    "loss", [MelLoss(16000), MelLevelLoss(16000), MultiResolutionSTFTLoss()], ids=type
)
def test_reconstruction_losses_rank_distortions(loss):
    clean = torch.sin(2 * torch.pi * 440 * torch.arange(8000) / 16000)[None, None].repeat(2, 1, 1)
    slightly = clean + 0.01 * torch.randn_like(clean)
    badly = clean + 0.3 * torch.randn_like(clean)
    assert loss(clean, clean) < 1e-4
    assert loss(slightly, clean) < loss(badly, clean)
    estimate = badly.clone().requires_grad_()
    loss(estimate, clean).backward()
    assert torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0
    stereo = torch.randn(1, 2, 4000)
    assert torch.isfinite(loss(stereo, stereo.flip(-1)))


def test_negative_si_sdr_is_the_metric_negated_and_ignores_scale():
    from codec.metrics import si_sdr

    torch.manual_seed(0)
    clean = torch.randn(3, 1, 4000)
    noisy = clean + 0.3 * torch.randn_like(clean)
    expected = -si_sdr(noisy, clean).mean()
    torch.testing.assert_close(negative_si_sdr(noisy, clean), expected, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(negative_si_sdr(5 * noisy, clean), negative_si_sdr(noisy, clean))
    assert negative_si_sdr(clean, clean) < -60
    estimate = noisy.clone().requires_grad_()
    negative_si_sdr(estimate, clean).backward()
    assert torch.isfinite(estimate.grad).all() and estimate.grad.abs().sum() > 0


def test_mel_distance_on_real_speech(fsdd_root):
    wav, rate = sf.read(sorted(fsdd_root.glob("*.wav"))[3], dtype="float32")
    speech = torch.from_numpy(wav)[None, None]
    mel = MelLoss(rate, n_ffts=(64, 128, 256, 512))
    lowpassed = AF.lowpass_biquad(speech, rate, 1500.0)
    noise = torch.randn_like(speech) * speech.abs().mean()
    assert 0 < mel(lowpassed, speech) < mel(noise, speech)
    assert waveform_l1(speech, speech) == 0


def test_adversarial_losses():
    real, fake = [torch.full((2, 5), 2.0)], [torch.full((2, 5), -2.0)]
    assert discriminator_loss(real, fake) == 0  # hinge: confident and right
    assert generator_loss(fake) == 3.0
    assert discriminator_loss(real, fake, "lsgan") > 0
    with pytest.raises(ValueError, match="hinge"):
        generator_loss(fake, "wgan")
    feats = [[torch.ones(2, 3), torch.full((2, 3), 2.0)]]
    assert feature_matching_loss(feats, feats) == 0
    assert feature_matching_loss(feats, [[torch.zeros(2, 3), torch.zeros(2, 3)]]) == 1.0


def test_balancer_gives_each_loss_its_weight_share_of_the_gradient():
    torch.manual_seed(0)
    audio = torch.randn(4, 1, 100, requires_grad=True)
    target = torch.randn(4, 1, 100)
    balancer = Balancer({"big": 3.0, "small": 1.0}, decay=0.0)
    losses = {
        "big": 1000 * (audio - target).pow(2).mean(),
        "small": 1e-3 * (audio - target.flip(-1)).abs().mean(),
    }
    grads = {
        name: torch.autograd.grad(loss, audio, retain_graph=True)[0]
        for name, loss in losses.items()
    }
    combined, norms = balancer.combine(losses, audio)
    unit = {n: g / g.reshape(4, -1).norm(dim=1).mean() for n, g in grads.items()}
    torch.testing.assert_close(combined, 0.75 * unit["big"] + 0.25 * unit["small"])
    assert norms == pytest.approx(
        {n: float(g.reshape(4, -1).norm(dim=1).mean()) for n, g in grads.items()}
    )
    with pytest.raises(ValueError, match="no balancer weight"):
        balancer.combine({"other": audio.sum()}, audio)


def test_a_loss_that_joins_late_gets_its_share_not_more():
    # the adversarial terms join at discriminator.start_step: their norm EMA starts then
    torch.manual_seed(0)
    audio = torch.randn(4, 1, 100, requires_grad=True)
    target = torch.randn(4, 1, 100)
    balancer = Balancer({"rec": 1.0, "adv": 1.0}, decay=0.9)
    for _ in range(50):
        balancer.combine({"rec": (audio - target).pow(2).mean()}, audio)
    losses = {"rec": (audio - target).pow(2).mean(), "adv": 1e-3 * audio.abs().mean()}
    grads = {n: torch.autograd.grad(v, audio, retain_graph=True)[0] for n, v in losses.items()}
    unit = {n: g / g.reshape(4, -1).norm(dim=1).mean() for n, g in grads.items()}
    combined, _ = balancer.combine(losses, audio)
    torch.testing.assert_close(combined, 0.5 * unit["rec"] + 0.5 * unit["adv"])
    # a gain of 0 (the start of the adversarial ramp) leaves the whole norm to the others
    combined, _ = balancer.combine(losses, audio, gains={"adv": 0.0})
    torch.testing.assert_close(combined, unit["rec"])


def test_balancer_state_round_trip():
    audio = torch.randn(2, 1, 10, requires_grad=True)
    a = Balancer({"l1": 1.0})
    a.combine({"l1": audio.abs().mean()}, audio)
    b = Balancer({"l1": 1.0})
    b.load_state_dict(a.state_dict())
    assert b.norm_ema == a.norm_ema and b.ema_weight == a.ema_weight
    # checkpoints from before the per-loss count held one count for every loss
    b.load_state_dict({"norm_ema": {"l1": 2.0}, "ema_weight": 3.0})
    assert b.ema_weight == {"l1": 3.0}


def test_mel_levels_see_a_gain_exactly_and_a_tilt_but_not_the_frame_order(fsdd_root):
    wav, rate = sf.read(sorted(fsdd_root.glob("*.wav"))[3], dtype="float32")
    speech = torch.from_numpy(wav)[None, None]
    levels = MelLevelLoss(rate)
    # a gain g moves every band's mean power by g^2: log10(4) for g = 2
    torch.testing.assert_close(levels(2 * speech, speech), torch.tensor(0.60206), atol=1e-4, rtol=0)
    tilted = AF.highpass_biquad(speech, rate, 1500.0)
    assert levels(tilted, speech) > 0.1
    # a band limit hides what happens above it
    lowpassed = AF.lowpass_biquad(speech, rate, 2000.0)
    below = MelLevelLoss(rate, f_max=1000.0)(lowpassed, speech)
    assert below < 0.02 < 0.1 < levels(lowpassed, speech)
    # frames played in reverse order keep each band's long-term level
    assert levels(speech.flip(-1), speech) < 0.02 < MelLoss(rate)(speech.flip(-1), speech)
