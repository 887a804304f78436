"""DAC checkpoints imported number for number: a reference DAC (descript-audio-codec 1.0.0; the
`dac_reference` fixture, tests/models/dac_reference.py, says how it is loaded without
audiotools) with every tensor randomised, saved as DAC saves its .pth files, imported, and
compared code for code and sample for sample."""

import pytest
import torch

from codec.cli import main
from codec.models import Codec
from codec.models.checkpoints import CheckpointError
from codec.models.dac import import_dac
from codec.models.importing import import_checkpoint, sniff_format


@pytest.fixture(scope="module", params=["even", "odd"])
def pair(request, tmp_path_factory, dac_reference):
    """(reference DAC, our imported Codec): rates 2, 4 (hop 8) or 2, 5 (hop 10, where DAC's
    decoder gives 10 f - 2 samples)."""
    config = dac_reference.SMALL if request.param == "even" else dac_reference.ODD
    reference = dac_reference.random_dac(config, seed=len(request.param))
    path = dac_reference.save_pth(reference, tmp_path_factory.mktemp("pth") / "weights.pth")
    return reference, import_dac(path).eval()


def test_codes_equal_dacs_and_audio_is_within_1e4_at_every_depth(pair, dac_reference):
    reference, model = pair
    hop = model.hop_length
    generator = torch.Generator().manual_seed(1)
    for length in (hop * 12, hop * 12 + 3, hop - 1, 1):
        wav = torch.randn(2, 1, length, generator=generator) * 0.3
        for levels in (1, 2, model.levels):
            expected = dac_reference.reference_encode(reference, wav, levels)
            codes = model.encode(wav, levels=levels)
            assert codes.shape == (2, 1, levels, -(-length // hop))
            assert torch.equal(codes[:, 0], expected), (length, levels)
            audio = dac_reference.reference_decode(reference, expected)
            decoded = model.decode(codes)
            assert decoded.shape[-1] == codes.shape[-1] * hop
            n = audio.shape[-1]
            assert n == model.decoder.output_length(codes.shape[-1])
            torch.testing.assert_close(decoded[..., :n], audio, atol=1e-4, rtol=0)
            assert not decoded[..., n:].any()  # the tail DAC's decoder does not give: zeros


def test_the_reference_audio_is_not_saturated(pair, dac_reference):
    """A comparison of tanh outputs at +-1 would prove little."""
    reference, model = pair
    wav = torch.randn(1, 1, model.hop_length * 20, generator=torch.Generator().manual_seed(0))
    audio = dac_reference.reference_decode(
        reference, dac_reference.reference_encode(reference, wav * 0.3)
    )
    assert (audio.abs() < 0.9).float().mean() > 0.5 and audio.std() > 0.05


def test_the_training_forward_gives_dacs_reconstruction(pair):
    """Eval-mode forward: DAC's forward output (decoded from its quantizer's straight-through
    latents, cropped to the input) within 1e-4; the losses are DAC's commitment * 0.25 +
    codebook * 1 (both are the same value in the forward pass)."""
    reference, model = pair
    wav = torch.randn(2, 1, model.hop_length * 9 + 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference(wav * 0.3)
        ours = model(wav * 0.3)
    torch.testing.assert_close(ours["audio"], expected["audio"], atol=1e-4, rtol=0)
    assert torch.equal(ours["codes"][:, 0], expected["codes"])


def test_the_architecture_is_read_off_the_checkpoint(pair):
    reference, model = pair
    encoder = model.config.part("encoder")[1]
    decoder = model.config.part("decoder")[1]
    quantizer = model.config.quantizer_options
    assert encoder.n_filters == reference.encoder_dim and encoder.rates == reference.encoder_rates
    assert decoder.n_filters == reference.decoder_dim and decoder.rates == reference.decoder_rates
    assert not decoder.output_padding
    assert model.config.dimension == reference.latent_dim and model.sample_rate == 16000
    assert quantizer.factorized and quantizer.codebook_dim == 8 and quantizer.learnable_codebook
    assert (model.levels, model.codebook_size) == (4, 32)
    assert model.quantizer.commitment_weight == 0.25 and model.quantizer.codebook_weight == 1.0


def test_saved_and_loaded_for_inference_the_model_codes_the_same(pair, tmp_path):
    """The folder round trip folds weight norm and converts for CPU inference."""
    _, model = pair
    model.save_pretrained(tmp_path / "model")
    loaded = Codec.from_pretrained(tmp_path / "model")
    wav = torch.randn(1, 1, model.hop_length * 30 + 7, generator=torch.Generator().manual_seed(4))
    codes = model.encode(wav * 0.3)
    assert torch.equal(loaded.encode(wav * 0.3), codes)
    torch.testing.assert_close(loaded.decode(codes), model.decode(codes), atol=1e-5, rtol=0)


def test_the_format_is_detected_by_name_or_contents(tmp_path, dac_reference):
    reference = dac_reference.random_dac(dac_reference.SMALL, seed=9)
    plain = dac_reference.save_pth(reference, tmp_path / "weights.pth")
    named = dac_reference.save_pth(reference, tmp_path / "dac_24khz.pth")
    assert sniff_format(plain)[0] == sniff_format(named)[0] == "dac"
    assert import_checkpoint(plain).model_id == "dac"
    model = import_checkpoint(named)
    assert model.model_id == "dac_24khz" and model.sample_rate == 16000  # the kwargs win
    torch.save(reference.state_dict(), tmp_path / "state.pth")
    assert sniff_format(tmp_path / "state.pth")[0] == "encodec"


def test_known_dac_names_are_accepted(tmp_path, monkeypatch, dac_reference):
    """`codec import dac_16khz` fetches the file (here: from a stand-in) and imports it as DAC;
    without sample_rate in the kwargs the name gives it."""
    from codec.models import download

    reference = dac_reference.random_dac(dac_reference.ODD, seed=2)
    reference.kwargs.pop("sample_rate")
    path = dac_reference.save_pth(reference, tmp_path / "dac_16khz.pth")
    fetched = []
    monkeypatch.setattr(download, "fetch_checkpoint", lambda name: fetched.append(name) or path)
    model = import_checkpoint("dac_16khz")
    assert fetched == ["dac_16khz"]
    assert model.model_id == "dac_16khz" and model.sample_rate == 16000 and model.hop_length == 10


def test_cli_import_writes_a_model_folder(tmp_path, capsys, dac_reference):
    reference = dac_reference.random_dac(dac_reference.SMALL, seed=4)
    path = dac_reference.save_pth(reference, tmp_path / "weights.pth")
    out = tmp_path / "model"
    assert main(["import", str(path), "-o", str(out)]) == 0
    assert Codec.from_pretrained(out).config.part("encoder")[0] == "dac"


# -- bad checkpoints -------------------------------------------------------------------------


class Payload:
    """Unpickling this creates a file: a checkpoint must never get that far."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.target),))


@pytest.fixture(scope="module")
def saved(dac_reference):
    reference = dac_reference.random_dac(dac_reference.SMALL, seed=7)
    return {"state_dict": reference.state_dict(), "metadata": {"kwargs": reference.kwargs}}


def test_bad_dac_files_are_one_line_naming_the_problem(tmp_path, saved, capsys):
    state, kwargs = saved["state_dict"], saved["metadata"]["kwargs"]
    target = tmp_path / "created-by-payload"
    missing = "decoder.model.2.block.1.weight_g"
    shaped = "encoder.block.1.block.0.block.0.alpha"
    level = "quantizer.quantizers.2.in_proj.bias"
    cases = {
        "payload": (
            {"state_dict": state, "metadata": {"kwargs": kwargs, "x": Payload(target)}},
            "refused without running it",
        ),
        "missing": (
            {**saved, "state_dict": {k: v for k, v in state.items() if k != missing}},
            f"missing DAC tensor {missing}",
        ),
        "shape": (
            {**saved, "state_dict": state | {shaped: torch.ones(1, 3, 1)}},
            f"{shaped} has shape [1, 3, 1]",
        ),
        "level-shape": (
            {**saved, "state_dict": state | {level: torch.ones(5)}},
            f"{level} has shape [5]",
        ),
        "unknown": (
            {**saved, "state_dict": state | {"encoder.block.0.extra": torch.ones(1)}},
            "unknown DAC tensor encoder.block.0.extra",
        ),
        "unknown-level": (
            {**saved, "state_dict": state | {"quantizer.quantizers.1.scale": torch.ones(1)}},
            "unknown DAC tensor quantizer.quantizers.1.scale",
        ),
        "kwargs": (
            {**saved, "metadata": {"kwargs": kwargs | {"encoder_rates": [2, 8]}}},
            "encoder_rates=[2, 8] disagrees",
        ),
        "not-tensors": ({**saved, "state_dict": {"encoder.block.0.bias": [1, 2]}}, "named tensor"),
        "no-metadata": ({"state_dict": state}, "not a DAC checkpoint"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"dac_{name}.pth"
        torch.save(content, path)
        out = tmp_path / f"out-{name}"
        assert main(["import", str(path), "-o", str(out), "--from", "dac"]) == 1, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err and path.name in err, (name, err)
        assert not out.exists()
    assert not target.exists()


def test_a_torch_package_archive_and_an_unknown_kind_are_refused(tmp_path, saved):
    from torch.package import PackageExporter

    path = tmp_path / "dac_44khz.pth"
    with PackageExporter(str(path)) as exporter:
        exporter.save_pickle("model", "model.pkl", {"weights": [1, 2]})
    with pytest.raises(CheckpointError, match="torch.package archive"):
        import_dac(path)
    torch.save(saved, tmp_path / "weights.pth")
    with pytest.raises(CheckpointError, match="unknown DAC kind 'dac_8khz'"):
        import_dac(tmp_path / "weights.pth", kind="dac_8khz")


@pytest.mark.slow
def test_full_size_dac_16khz_through_the_cli_gives_dacs_codes_and_audio(tmp_path, dac_reference):
    """DAC 16 kHz at full size (encoder_dim 64, rates 2, 4, 5, 8, latent 1024, decoder_dim
    1536, 12 codebooks of 1024): `codec import`, then codes equal DAC's at 1 and 12 levels and
    audio within 1e-4 over DAC's 320 f - 8 samples, zeros after."""
    from codec.models.dac import DAC_16KHZ

    config = DAC_16KHZ | {"sample_rate": 16000}
    reference = dac_reference.random_dac(
        config, seed=11, gain=0.85
    )  # at 1, DAC's own fp32 error is 2e-4
    path = dac_reference.save_pth(reference, tmp_path / "dac_16khz.pth")
    folder = tmp_path / "model"
    assert main(["import", str(path), "-o", str(folder)]) == 0
    model = Codec.from_pretrained(folder, inference=False).eval()
    wav = torch.randn(1, 1, 16000 + 123, generator=torch.Generator().manual_seed(0)) * 0.3
    for levels in (1, 12):
        expected = dac_reference.reference_encode(reference, wav, levels)
        codes = model.encode(wav, levels=levels)
        assert torch.equal(codes[:, 0], expected), levels
        audio = dac_reference.reference_decode(reference, expected)
        assert audio.shape[-1] == 320 * codes.shape[-1] - 8 and audio.std() > 0.05
        decoded = model.decode(codes)
        torch.testing.assert_close(decoded[..., : audio.shape[-1]], audio, atol=1e-4, rtol=0)
        assert not decoded[..., audio.shape[-1] :].any()
