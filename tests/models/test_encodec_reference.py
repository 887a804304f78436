"""The random EnCodec reference models really are random everywhere, and still run."""

import pytest
import torch
from references import reference

reference("encodec")


@pytest.mark.parametrize("sample_rate", [24000, 48000])
def test_randomisation_changes_every_tensor(sample_rate, encodec_reference):
    torch.manual_seed(0)
    model = encodec_reference._small_encodec(sample_rate)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    encodec_reference.randomize_encodec_(model, seed=1)
    after = model.state_dict()
    assert after.keys() == before.keys()
    unchanged = [name for name in after if torch.equal(after[name], before[name])]
    assert unchanged == []

    for name, value in after.items():
        assert torch.isfinite(value).all(), name
        if name.endswith("weight_g"):  # the magnitude is not the direction's norm
            v = after[name.replace("weight_g", "weight_v")]
            norms = v.flatten(1).norm(dim=1).view_as(value)
            assert not torch.allclose(value, norms, rtol=0.05), name
        if name.endswith("bias"):
            assert value.ne(0).all(), name
        if name.endswith("norm.weight"):  # GroupNorm scales, 1 by default
            assert value.ne(1).all(), name
        if name.endswith("_codebook.inited"):
            assert value.eq(1).all()
        if name.endswith("_codebook.cluster_size"):
            assert value.gt(0).all()
        if name.endswith(("_codebook.embed", "_codebook.embed_avg")):
            assert 0.8 < value.std() / encodec_reference.CODEBOOK_STD < 1.2, name
    norm_weights = [name for name in after if name.endswith("norm.weight")]
    assert bool(norm_weights) == (sample_rate == 48000)  # GroupNorm only in the 48 kHz model


def test_seed_decides_the_weights(encodec_reference):
    first = encodec_reference.random_encodec(24000, small=True, seed=3).state_dict()
    same = encodec_reference.random_encodec(24000, small=True, seed=3).state_dict()
    other = encodec_reference.random_encodec(24000, small=True, seed=4).state_dict()
    assert all(torch.equal(first[name], same[name]) for name in first)
    assert not any(torch.equal(first[name], other[name]) for name in first if "inited" not in name)


# (test_ecdc runs the full-size models' encoders on random codebooks)
@pytest.mark.parametrize("sample_rate, seconds", [(24000, 0.05), (48000, 1.0)])
def test_encode_and_decode_run(sample_rate, seconds, encodec_reference):
    model = encodec_reference.random_encodec(sample_rate, small=True, seed=0)
    assert model.name == f"encodec_{sample_rate // 1000}khz"
    assert (model.segment is not None) == (sample_rate == 48000) == model.normalize
    wav = 0.1 * torch.randn(model.channels, int(seconds * sample_rate))
    frames = encodec_reference.reference_encode(model, wav)
    segments = 2 if sample_rate == 48000 else 1
    assert len(frames) == segments
    for codes, scale in frames:
        assert codes.dtype == torch.int64 and codes.shape[:2] == (1, model.quantizer.n_q)
        assert codes.min() >= 0 and codes.max() < model.quantizer.bins
        assert (scale is not None) == model.normalize
    # random codebooks still give varied codes: a level stuck on one code would hide order bugs
    first_codes = frames[0][0][0]
    assert all(level.unique().numel() > 1 for level in first_codes)
    audio = encodec_reference.reference_decode(model, frames, length=wav.shape[-1])
    assert audio.shape == (1, model.channels, wav.shape[-1])
    assert torch.isfinite(audio).all() and audio.abs().max() > 0


def test_reference_encode_uses_the_bandwidth_and_restores_it(encodec_reference):
    model = encodec_reference.random_encodec(24000, small=True, seed=0)
    wav = 0.1 * torch.randn(1, 400)
    low = model.target_bandwidths[0]
    ((codes, _),) = encodec_reference.reference_encode(model, wav, bandwidth=low)
    assert codes.shape[1] == 1  # one codebook at the lowest bandwidth
    assert model.bandwidth is None
    ((all_codes, _),) = encodec_reference.reference_encode(model, wav)
    assert all_codes.shape[1] == model.quantizer.n_q
    assert torch.equal(all_codes[:, :1], codes)  # residual levels: a prefix of the full codes


@pytest.mark.parametrize("sample_rate, channels, n_q", [(24000, 1, 32), (48000, 2, 16)])
def test_full_size_models_are_encodecs(sample_rate, channels, n_q, encodec_reference):
    model = encodec_reference.random_encodec(sample_rate, small=False, seed=0)
    assert (model.channels, model.quantizer.n_q, model.quantizer.bins) == (channels, n_q, 1024)
    assert model.encoder.hop_length == 320
    assert model.name == f"encodec_{sample_rate // 1000}khz"
    defaults = encodec_reference._full_encodec(sample_rate).state_dict()
    assert defaults.keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        assert not torch.equal(value, defaults[name]), name


def test_save_th_is_a_plain_state_dict(tmp_path, encodec_reference):
    model = encodec_reference.random_encodec(48000, small=True, seed=2)
    path = encodec_reference.save_th(model, tmp_path / "model.th")
    state = torch.load(path, weights_only=True)
    assert state.keys() == model.state_dict().keys()
    fresh = encodec_reference._small_encodec(48000)
    fresh.load_state_dict(state)
    fresh.eval()
    wav = 0.1 * torch.randn(2, 2000)
    ours, theirs = (
        encodec_reference.reference_encode(model, wav),
        encodec_reference.reference_encode(fresh, wav),
    )
    assert all(torch.equal(a[0], b[0]) for a, b in zip(ours, theirs))
