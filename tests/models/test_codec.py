"""The Codec model and whole-file coding: rates, bitrates, saving, batches, chunks, streaming."""

import json

import pytest
import soundfile as sf
import torch

from codec.audio import AudioError, convert_channels, loudness_gain_db, read_audio
from codec.coding import (
    FileSource,
    Windowing,
    decode_chunks,
    decode_codes,
    encode_batch,
    encode_files,
    load_for_model,
    prepare_audio,
)
from codec.models import Codec, ModelFormatError
from codec.nn import for_cpu_inference


def test_encode_decode_shapes_and_bitrates(tiny_codec):
    model = tiny_codec().eval()
    assert model.frame_rate == 250 and model.bandwidths == [3.0, 6.0, 9.0, 12.0]
    assert model.levels_for(bandwidth=7) == 2 and model.levels_for() == 4
    with pytest.raises(ValueError, match="below"):
        model.levels_for(bandwidth=1)
    wav = torch.randn(2, 1, 1000) * 0.1
    codes = model.encode(wav, bandwidth=6)
    assert codes.shape == (2, 2, 2, 16) and codes.dtype == torch.long
    assert model.decode(codes, length=1000).shape == (2, 1, 1000)
    with pytest.raises(ValueError, match=r"\(batch, 1, samples\)"):
        model.encode(torch.randn(1, 2, 100))


def test_the_python_api_names_bad_audio_and_codes(tiny_codec):
    model = tiny_codec().eval()
    wav = torch.randn(1, 1, 1000) * 0.1
    with pytest.raises(ValueError, match="floating-point audio.*int16"):
        model.encode((wav * 32767).to(torch.int16))
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.encode(torch.where(torch.arange(1000) == 500, float("inf"), wav))
    assert torch.equal(model.encode(wav.double()), model.encode(wav))  # other floats: cast
    with pytest.raises(ValueError, match="no frames"):
        model.decode(torch.zeros(1, 2, 4, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        model.decode(torch.full((1, 2, 4, 3), 64))


def test_training_forward_gives_losses_and_gradients(tiny_codec):
    model = tiny_codec().train()
    out = model(torch.randn(2, 1, 640) * 0.1)
    assert out["audio"].shape == (2, 1, 640) and out["codes"].shape == (2, 2, 4, 10)
    (out["audio"].abs().mean() + out["commitment"]).backward()
    assert model.encoder.model[0].conv.parametrizations.weight.original1.grad is not None


def test_save_and_load_round_trip(tmp_path, tiny_codec):
    model = tiny_codec().eval()
    wav = torch.randn(1, 1, 2000) * 0.1
    folder = model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = Codec.from_pretrained(folder)
    assert loaded.model_hash == model.weights_hash()
    assert torch.equal(loaded.encode(wav), model.encode(wav))
    torch.testing.assert_close(loaded.decode(model.encode(wav)), model.decode(model.encode(wav)))
    resaved = Codec.from_pretrained(loaded.save_pretrained(tmp_path / "again"))  # folded weights
    assert resaved.config.part("encoder")[1].norm == "none"
    assert torch.equal(resaved.encode(wav), model.encode(wav))


def test_damaged_model_folders_are_refused(tmp_path, tiny_codec):
    folder = tiny_codec().save_pretrained(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["weights_hash"] = "0" * 16
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="hash"):
        Codec.from_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelFormatError, match="unreadable weights"):
        Codec.from_pretrained(folder)
    with pytest.raises(ModelFormatError, match="missing config.json"):
        Codec.from_pretrained(tmp_path)


@pytest.mark.parametrize("causal", [False, True])
def test_a_file_gets_the_same_codes_alone_and_in_a_padded_batch(causal, tiny_codec):
    model = tiny_codec(causal=causal).eval()
    windowing = Windowing(chunk_frames=40, context_frames=8, quantum_frames=10)
    g = torch.Generator().manual_seed(3)
    signals = [torch.randn(1, n, generator=g) * 0.1 for n in (5000, 1234, 64 * 40, 77)]
    together = encode_batch(model, signals, 3, windowing)
    for signal, codes in zip(signals, together):
        alone = encode_batch(model, [signal], 3, windowing)[0]
        assert codes.shape == (2, 3, model.frames_for(signal.shape[-1]))
        assert torch.equal(alone, codes)


def test_causal_chunked_coding_equals_one_pass(tiny_codec):
    model = tiny_codec(causal=True).eval()
    wav = torch.randn(1, 64 * 130) * 0.1
    windowing = Windowing(chunk_frames=32, context_frames=0, quantum_frames=8)
    (chunked,) = encode_batch(model, [wav], 4, windowing)
    assert torch.equal(chunked, model.encode(wav[None])[0])
    decoded = decode_codes(model, chunked, wav.shape[-1], windowing)
    torch.testing.assert_close(decoded, model.decode(chunked[None])[0, :, : wav.shape[-1]])


def test_non_causal_chunked_coding_stays_close_to_one_pass(tiny_codec):
    """What holds for a non-causal model: with 25 frames of context, nearly every frame's codes
    (all of them away from chunk edges) match a one-pass encode."""
    model = tiny_codec().eval()
    wav = torch.randn(1, 64 * 400) * 0.1
    windowing = Windowing(chunk_frames=100, context_frames=25, quantum_frames=25)
    (chunked,) = encode_batch(model, [wav], 1, windowing)
    one_pass = model.encode(wav[None], levels=1)[0]
    assert (chunked == one_pass).float().mean() > 0.95
    interior = torch.cat([torch.arange(k + 10, k + 90) for k in range(0, 400, 100)])
    assert torch.equal(chunked[..., interior], one_pass[..., interior])


@pytest.mark.parametrize("converted", [False, True])
def test_streaming_decode_frame_by_frame_equals_offline(converted, tiny_codec):
    """Zero padding: a first chunk of one frame is shorter than the decoder's reflect padding."""
    model = tiny_codec(causal=True, pad_mode="zeros").eval()
    if converted:
        for_cpu_inference(model.requires_grad_(False))
    codes = model.encode(torch.randn(1, 1, 64 * 30) * 0.1)
    offline = model.decode(codes)
    with model.streaming():
        frames = [model.decode(codes[..., k : k + 1]) for k in range(codes.shape[-1])]
    assert frames[0].shape[-1] == model.hop_length  # one hop of latency
    torch.testing.assert_close(torch.cat(frames, -1), offline, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="causal"):
        tiny_codec().streaming()


def test_loudness_is_normalised_and_restored(tiny_codec):
    model = tiny_codec(loudness_lufs=-16.0).eval()
    t = torch.arange(16000 * 2) / 16000
    quiet = (0.01 * torch.sin(2 * torch.pi * 220 * t))[None]
    windowing = Windowing(chunk_frames=250, context_frames=25, quantum_frames=250)
    prepared = prepare_audio(model, quiet, 16000, windowing)
    assert len(prepared.gains_db) == 2 and all(g > 20 for g in prepared.gains_db)
    assert abs(loudness_gain_db(prepared.wav[:, :16000], 16000, -16.0)) < 0.5
    (codes,) = encode_batch(model, [prepared.wav], 4, windowing)
    out = decode_codes(model, codes, prepared.wav.shape[-1], windowing, prepared.gains_db)
    normalised = decode_codes(model, codes, prepared.wav.shape[-1], windowing)
    ratio = normalised.abs().mean() / out.abs().mean()
    assert abs(20 * torch.log10(ratio).item() - prepared.gains_db[0]) < 0.5


def test_channel_rule_and_resampling(tiny_codec):
    stereo = torch.stack([torch.ones(100), -torch.ones(100)])
    assert torch.equal(convert_channels(stereo, 1), torch.zeros(1, 100))
    assert convert_channels(torch.ones(1, 10), 2).shape == (2, 10)
    with pytest.raises(AudioError, match="6 channels"):
        convert_channels(torch.ones(6, 10), 2, "x.wav")
    model = tiny_codec()
    prepared = prepare_audio(model, torch.randn(2, 8000), 8000, Windowing.for_model(model))
    assert prepared.wav.shape == (1, 16000) and prepared.source_channels == 2


def test_real_speech_through_a_model(fsdd_root, tmp_path, tiny_codec):
    model = tiny_codec().eval()
    path = sorted(fsdd_root.glob("*.wav"))[0]
    wav, rate = read_audio(path)
    assert rate == 8000
    windowing = Windowing.for_model(model)
    prepared = prepare_audio(model, wav, rate, windowing)
    (codes,) = encode_batch(model, [prepared.wav], 4, windowing)
    out = decode_codes(model, codes, prepared.length, windowing)
    assert out.shape == prepared.wav.shape and torch.isfinite(out).all()
    sf.write(tmp_path / "nan.wav", torch.full((100,), float("nan")).numpy(), 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        read_audio(tmp_path / "nan.wav")


def test_files_at_the_model_rate_are_read_from_disk_with_the_same_codes(tmp_path, tiny_codec):
    for causal in (False, True):
        model = tiny_codec(causal=causal).eval()
        windowing = Windowing(chunk_frames=30, context_frames=6, quantum_frames=10)
        wav = torch.randn(1, 64 * 95 + 17) * 0.1
        sf.write(tmp_path / "a.wav", wav[0].numpy(), 16000, subtype="FLOAT")
        source = load_for_model(model, tmp_path / "a.wav", windowing)
        assert isinstance(source.wav, FileSource) and source.length == wav.shape[-1]
        from_disk = encode_batch(model, [source.wav], 3, windowing)[0]
        assert torch.equal(from_disk, encode_batch(model, [wav], 3, windowing)[0])
        pieces = list(decode_chunks(model, from_disk, wav.shape[-1], windowing))
        assert len(pieces) == 4 and sum(p.shape[-1] for p in pieces) == wav.shape[-1]


def test_encode_files_yields_codes_or_the_error_for_each_file_in_order(tmp_path, tiny_codec):
    model = tiny_codec().eval()
    windowing = Windowing.for_model(model)
    torch.manual_seed(1)
    lengths = {"a.wav": 3000, "b.wav": 0, "c.wav": 1700, "d.wav": 0, "e.wav": 900}
    for name, length in lengths.items():
        if length:
            sf.write(tmp_path / name, (torch.randn(length) * 0.1).numpy(), 16000)
        else:
            (tmp_path / name).write_text("not audio")
    paths = [tmp_path / name for name in lengths]
    results = list(encode_files(model, paths, 3, windowing, batch_size=2))
    assert len(results) == len(paths)
    for path, (audio, codes) in zip(paths, results):
        if lengths[path.name]:
            wav = load_for_model(model, path, windowing).wav
            assert torch.equal(codes, encode_batch(model, [wav], 3, windowing)[0])
            assert audio.length == lengths[path.name]
        else:
            assert audio is None and isinstance(codes, AudioError) and path.name in str(codes)


def test_stereo_model_and_the_channel_rule_for_inputs(tiny_codec):
    model = tiny_codec(channels=2).eval()
    stereo = torch.randn(1, 2, 1000) * 0.1
    assert model.decode(model.encode(stereo), length=1000).shape == (1, 2, 1000)
    prepared = prepare_audio(model, torch.randn(1, 1600), 16000, Windowing.for_model(model))
    assert prepared.wav.shape == (2, 1600) and torch.equal(prepared.wav[0], prepared.wav[1])
