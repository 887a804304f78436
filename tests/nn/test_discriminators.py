import math

import pytest
import torch
import torch.nn.functional as F

from codec.nn.discriminators import (
    CombinedDiscriminator,
    MultiBandDiscriminator,
    MultiPeriodDiscriminator,
    MultiScaleSTFTDiscriminator,
    make_discriminator,
    make_discriminators,
)

FILTERS = 4  # small widths keep the file fast on 2 CPU cores

# name -> (constructor options, number of sub-discriminators)
CASES = {
    "msstft": ({"n_ffts": (512, 256, 128)}, 3),
    "mpd": ({"periods": (2, 3, 5)}, 3),
    "mbd": ({"fft_sizes": (512, 256)}, 2),
}


def build(name: str, channels: int = 1):
    options, _ = CASES[name]
    return make_discriminator(name, channels, filters=FILTERS, **options)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("length", [4000, 4097])
def test_output_structure(name, channels, length):
    disc = build(name, channels)
    wav = torch.randn(2, channels, length)
    logits, features = disc(wav)
    expected = CASES[name][1]
    assert len(logits) == expected
    assert len(features) == expected
    for score, feats in zip(logits, features):
        assert score.shape[:2] == (2, 1)
        assert torch.isfinite(score).all()
        assert len(feats) > 0
        for f in feats:
            assert f.shape[0] == 2
            assert torch.isfinite(f).all()


def test_default_configurations():
    wav = torch.randn(1, 1, 4000)
    msstft = MultiScaleSTFTDiscriminator(filters=FILTERS)
    mpd = MultiPeriodDiscriminator(filters=FILTERS)
    mbd = MultiBandDiscriminator(filters=FILTERS)
    assert len(msstft(wav)[0]) == 5
    logits, features = mpd(wav)
    assert len(logits) == 5 and all(len(f) == 5 for f in features)
    # each period's logits keep the period as the last axis
    assert [s.shape[-1] for s in logits] == [2, 3, 5, 7, 11]
    logits, features = mbd(wav)
    assert len(logits) == 3 and all(len(f) == 5 * 5 for f in features)


def test_mpd_widths_match_hifigan_at_default():
    mpd = MultiPeriodDiscriminator()
    widths = [layer.out_channels for layer in mpd.periods[0].layers]
    assert widths == [32, 128, 512, 1024, 1024]


def test_msstft_scale_shapes():
    disc = MultiScaleSTFTDiscriminator(filters=FILTERS, n_ffts=(256,))
    logits, _ = disc(torch.randn(1, 1, 4000))
    frames = 4000 // 64 + 1  # centred STFT with hop 256 // 4
    bins = 129
    for _ in range(3):  # three frequency-strided layers
        bins = math.ceil(bins / 2)
    assert logits[0].shape == (1, 1, frames, bins)


def test_short_input_is_accepted():
    for name in CASES:
        logits, _ = build(name)(torch.randn(1, 1, 200))
        assert all(torch.isfinite(s).all() for s in logits)


def test_unknown_name_is_rejected():
    with pytest.raises(ValueError, match="unknown discriminator"):
        make_discriminator("hifigan")


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_reach_audio_and_parameters(name):
    disc = build(name, channels=2)
    wav = torch.randn(2, 2, 4000, requires_grad=True)
    logits, features = disc(wav)
    loss = sum(s.mean() for s in logits) + sum(f.abs().mean() for fs in features for f in fs)
    loss.backward()
    assert wav.grad is not None and torch.isfinite(wav.grad).all()
    assert wav.grad.abs().sum() > 0
    for pname, param in disc.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
    assert sum(p.grad.abs().sum() for p in disc.parameters()) > 0


def _sines(batch: int, length: int, sample_rate: int = 16000) -> torch.Tensor:
    t = torch.arange(length) / sample_rate
    freqs = torch.empty(batch, 1, 1).uniform_(200, 2000)
    phases = torch.empty(batch, 1, 1).uniform_(0, 2 * math.pi)
    return 0.5 * torch.sin(2 * math.pi * freqs * t + phases)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hinge_training_separates_real_from_fake(name):
    """20 Adam steps of the hinge loss teach it sine waves (real) from white noise (fake)."""
    disc = build(name)
    optimizer = torch.optim.Adam(disc.parameters(), lr=3e-3, betas=(0.5, 0.9))

    def mean_logit(wav):
        logits, _ = disc(wav)
        return torch.stack([s.mean() for s in logits]).mean()

    with torch.no_grad():
        initial_gap = mean_logit(_sines(4, 4000)) - mean_logit(0.5 * torch.randn(4, 1, 4000))
    assert initial_gap.abs() < 0.1  # untrained: no preference

    for _ in range(20):
        real = _sines(4, 4000)
        fake = 0.5 * torch.randn(4, 1, 4000)
        real_logits, _ = disc(real)
        fake_logits, _ = disc(fake)
        loss = sum(
            F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with torch.no_grad():
        real_score = mean_logit(_sines(4, 4000))
        fake_score = mean_logit(0.5 * torch.randn(4, 1, 4000))
    assert real_score > fake_score + 0.5, (float(real_score), float(fake_score))


def test_combined_concatenates_in_order():
    parts = [build("msstft"), build("mpd"), build("mbd")]
    combined = CombinedDiscriminator(parts)
    wav = torch.randn(2, 1, 4000)
    logits, features = combined(wav)
    assert len(logits) == len(features) == sum(n for _, n in CASES.values())
    offset = 0
    for part in parts:
        part_logits, part_features = part(wav)
        for i, (score, feats) in enumerate(zip(part_logits, part_features)):
            torch.testing.assert_close(logits[offset + i], score)
            assert len(features[offset + i]) == len(feats)
            for a, b in zip(features[offset + i], feats):
                torch.testing.assert_close(a, b)
        offset += len(part_logits)
    # its parameters are the union of its parts'
    assert sum(p.numel() for p in combined.parameters()) == sum(
        p.numel() for part in parts for p in part.parameters()
    )


def test_make_discriminators_single_and_combined():
    single = make_discriminators(["mpd"], channels=1, filters=FILTERS)
    assert isinstance(single, MultiPeriodDiscriminator)
    both = make_discriminators(["mpd", "mbd"], channels=1, filters=FILTERS)
    assert isinstance(both, CombinedDiscriminator)
    logits, features = both(torch.randn(1, 1, 4000))
    assert len(logits) == len(features) == 5 + 3


def test_state_dict_round_trip():
    disc = build("mbd")
    copy = build("mbd")
    copy.load_state_dict(disc.state_dict())
    wav = torch.randn(1, 1, 4000)
    torch.testing.assert_close(disc(wav)[0][0], copy(wav)[0][0])
    # the STFT window is a buffer, rebuilt rather than stored
    assert not any("window" in key for key in disc.state_dict())
