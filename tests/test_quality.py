"""quality_by_level: one encode per clip, the codes at n levels are the first n, scores from
the decoded audio."""

import pytest
import torch

from codec.audio import read_for
from codec.coding import Windowing, decode_codes, encode_batch
from codec.metrics import si_sdr
from codec.quality import level_ladder, quality_by_level


def sdr(estimate, reference):
    return {"si_sdr": float(si_sdr(estimate[None], reference[None]))}


def test_one_encode_per_clip_gives_the_codes_and_audio_of_each_level(
    fsdd_root, monkeypatch, tiny_codec
):
    model = tiny_codec().eval()
    wavs = [read_for(p, 16000, 1) for p in sorted(fsdd_root.glob("*_theo_*.wav"))[:2]]
    calls = {"encode": 0}
    encode = model.encode

    def counted(*args, **kwargs):
        calls["encode"] += 1
        return encode(*args, **kwargs)

    monkeypatch.setattr(model, "encode", counted)
    clips = list(quality_by_level(model, wavs, [1, 2, 4], sdr))
    assert calls["encode"] == len(wavs)  # each clip is shorter than a window: one pass each
    windowing = Windowing.for_model(model)
    for wav, clip in zip(wavs, clips):
        assert clip.codes.shape[:2] == (model.groups, 4)
        assert sorted(clip.decoded) == sorted(clip.scores) == [1, 2, 4]
        for n in (1, 2, 4):
            with torch.no_grad():
                (alone,) = encode_batch(model, [wav], n, windowing)
                expected = decode_codes(model, alone, wav.shape[-1], windowing)
            assert torch.equal(clip.codes[:, :n], alone)
            torch.testing.assert_close(clip.decoded[n], expected)
            assert clip.scores[n] == sdr(expected, wav)


@pytest.mark.parametrize("levels", [[0, 1], [5], []])
def test_levels_outside_the_model_are_refused(levels, tiny_codec):
    model = tiny_codec().eval()
    with pytest.raises(ValueError, match=r"levels must be within 1\.\.4"):
        list(quality_by_level(model, [torch.zeros(1, 1600)], levels, sdr))


def test_level_ladder_doubles_up_to_the_total():
    assert level_ladder(1) == [1]
    assert level_ladder(8) == [1, 2, 4, 8]
    assert level_ladder(12) == [1, 2, 4, 8, 12]


def test_the_unquantized_row_is_the_latents_decoded_with_the_gains_undone(fsdd_root, tiny_codec):
    model = tiny_codec(loudness_lufs=-16.0).eval()
    paths = sorted(fsdd_root.glob("*_theo_*.wav"))[:4]  # about 2 s, long enough to measure
    wav = torch.cat([read_for(p, 16000, 1) for p in paths], -1) * 0.1
    seen = []

    def keep(estimate, reference):
        seen.append(estimate)
        return sdr(estimate, reference)

    (clip,) = quality_by_level(model, [wav], [4], keep, unquantized=True)
    assert len(clip.prepared.gains_db) == 1 and clip.prepared.gains_db[0] > 6  # quiet: raised
    with torch.no_grad():
        loud = clip.prepared.wav[None]
        expected = model.decoder(model.encoder(loud))[0, :, : wav.shape[-1]]
    gain = 10 ** (-clip.prepared.gains_db[0] / 20)
    torch.testing.assert_close(seen[-1], expected * gain)
    assert clip.unquantized == sdr(seen[-1], wav)
    assert (seen[-1] - clip.decoded[4]).abs().max() > 1e-4  # the codes are not the latents
