"""The shipped speech16k model (codec/pretrained/speech16k): it loads as itself, is small and
causal, streams exactly, codes real speech that it never trained on well above chance, gains with
every level, and is found by name from the CLI and from a .codes file."""

import json
from pathlib import Path

import pytest
import torch

from codec.audio import read_for
from codec.cli import main
from codec.metrics import si_sdr
from codec.models import Codec
from codec.models.names import PRETRAINED, resolve_model

SHIPPED = PRETRAINED / "speech16k"
CLIPS = Path(__file__).resolve().parents[2] / "recipes" / "demo" / "speech"


@pytest.fixture(scope="module")
def model() -> Codec:
    return Codec.from_pretrained(resolve_model("speech16k"))


@pytest.fixture(scope="module")
def speech(fsdd_root) -> torch.Tensor:
    """(1, 1, t): six FSDD digits (English, 8 kHz recordings) from different speakers."""
    speakers = sorted({path.name.split("_")[1] for path in fsdd_root.glob("*.wav")})[:6]
    files = [fsdd_root / f"{digit}_{speaker}_0.wav" for digit, speaker in enumerate(speakers)]
    return torch.cat([read_for(f, 16000, 1) for f in files], -1)[None]


def test_the_shipped_folder_is_small_causal_and_named(model):
    assert resolve_model("speech16k") == SHIPPED
    config = json.loads((SHIPPED / "config.json").read_text())
    assert config["model_id"] == "speech16k" == model.model_id
    assert model.model_hash == config["weights_hash"]  # checked on load too
    assert (SHIPPED / "model.safetensors").stat().st_size <= 10 * 2**20
    assert (SHIPPED / "README.md").is_file()
    assert model.causal and model.sample_rate == 16000
    assert model.bandwidths[:8] == [1.5, 3.0, 4.5, 6.0, 7.5, 9.0, 10.5, 12.0]


def test_it_codes_unseen_speech_well_above_chance_and_better_with_more_levels(model, speech):
    """FSDD is out of its training domain (another language, other microphones)."""
    quality = []
    for levels in (1, 2, 4, 8):
        decoded = model.decode(model.encode(speech, levels=levels), length=speech.shape[-1])
        quality.append(float(si_sdr(decoded, speech).mean()))
    assert quality[2] > 0.0, quality  # an unrelated output scores far below 0 dB
    assert quality[0] < quality[1] < quality[2] < quality[3], quality


def _chunked(step, signal: torch.Tensor, sizes: list[int], unit: int, axis: int = -1):
    """`step` over consecutive chunks of `signal`'s last axis of sizes[i] * unit (cycled), its
    outputs joined along `axis`."""
    pieces, start, i = [], 0, 0
    while start < signal.shape[-1]:
        size = sizes[i % len(sizes)] * unit
        pieces.append(step(signal[..., start : start + size]))
        start, i = start + size, i + 1
    return torch.cat(pieces, axis)


@pytest.mark.parametrize("sizes", [[1], [3, 1, 7, 2, 5]], ids=["one frame", "uneven"])
def test_a_stream_equals_offline_coding_from_the_first_sample(model, speech, sizes):
    """Its convs pad with zeros, so the left padding a stream sees (nothing yet) is the
    offline padding: the encoder's latents and codes and the decoder's audio agree from
    sample 0, one frame at a time and in uneven chunks."""
    assert {model.config.encoder["pad_mode"], model.config.decoder["pad_mode"]} == {"zeros"}
    hop, x = model.hop_length, speech[..., :32000]
    with torch.no_grad():
        latents, codes = model._latents(x), model.encode(x, bandwidth=6)
        offline = model.decode(codes)
        with model.streaming():
            streamed_latents = _chunked(model._latents, x, sizes, hop, axis=1)  # (b, f, d)
        with model.streaming():
            streamed_codes = _chunked(lambda c: model.encode(c, bandwidth=6), x, sizes, hop)
        with model.streaming():
            streamed = _chunked(model.decode, codes, sizes, 1)
    torch.testing.assert_close(streamed_latents, latents, atol=1e-5, rtol=0)
    assert torch.equal(streamed_codes, codes)
    torch.testing.assert_close(streamed, offline, atol=1e-5, rtol=0)


def test_a_codes_file_finds_the_shipped_model_without_m(tmp_path):
    clip = CLIPS / "cs_z-v-forky.flac"
    codes, decoded = tmp_path / "clip.codes", tmp_path / "clip.wav"
    assert main(["encode", str(clip), "-m", "speech16k", "-b", "6", "-o", str(codes)]) == 0
    assert main(["decode", str(codes), "-o", str(decoded), "--quiet"]) == 0
    wav = read_for(decoded, 16000, 1)
    original = read_for(clip, 16000, 1)
    assert abs(wav.shape[-1] - original.shape[-1]) == 0
    assert float(si_sdr(wav[None], original[None]).mean()) > 0.0


def test_from_pretrained_takes_the_short_names_the_cli_takes(tmp_path, monkeypatch):
    """A shipped model by name, one imported into the cache by name, and a name that is
    neither: one line naming the places looked at."""
    assert Codec.from_pretrained("speech16k").model_hash == resolve_model_hash()
    monkeypatch.setenv("CODEC_CACHE", str(tmp_path))
    from codec.models.names import models_dir

    Codec.from_pretrained("speech16k").save_pretrained(models_dir() / "mine")
    assert Codec.from_pretrained("mine").model_id == "speech16k"
    with pytest.raises(FileNotFoundError, match="no model folder, shipped model or imported"):
        Codec.from_pretrained("no_such_model")


def resolve_model_hash() -> str:
    return json.loads((PRETRAINED / "speech16k" / "config.json").read_text())["weights_hash"]


def test_every_command_takes_the_names_that_m_takes(tmp_path, capsys, monkeypatch):
    """`codec info NAME` describes the model as `-m NAME` loads it, and fine-tuning starts from
    a name too; a name that is nothing says so instead of "cannot read"."""
    from omegaconf import OmegaConf

    from codec.train.solver import build_model

    monkeypatch.chdir(tmp_path)  # no folder called speech16k here
    assert main(["info", "speech16k"]) == 0
    out = capsys.readouterr().out
    assert "model speech16k" in out and "3 group(s) x 8 levels x 1024 codes" in out
    assert main(["info", "no_such_model"]) == 1
    err = capsys.readouterr().err
    assert "no_such_model: no model folder, shipped model or imported model" in err
    assert "cannot read" not in err
    assert main(["info", "missing.codes"]) == 1
    assert "missing.codes: cannot read" in capsys.readouterr().err
    cfg = OmegaConf.create({"init_from": "speech16k", "init_changes": {}})
    assert build_model(cfg).model_id == "speech16k"
