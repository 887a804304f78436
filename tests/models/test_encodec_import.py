"""EnCodec checkpoints imported number for number: a reference EncodecModel (the `encodec`
package) with every tensor randomised, saved as EnCodec saves its .th files, imported, and
compared code for code and sample for sample."""

import tempfile
import zipfile
from pathlib import Path

import pytest
import torch

from codec.cli import main
from codec.models import Codec
from codec.models.checkpoints import CheckpointError
from codec.models.encodec import import_encodec

# hop 32 in the small configuration; the first conv pads 6 samples, the last 6 frames
SMALL_LENGTHS = {24000: [32 * 40, 32 * 40 + 11, 150, 5], 48000: [48000 * 2 + 4000, 9600, 5]}


@pytest.fixture(scope="module", params=[24000, 48000])
def pair(request, tmp_path_factory, encodec_reference):
    """(reference EncodecModel, our imported Codec), small configuration."""
    rate = request.param
    reference = encodec_reference.random_encodec(rate, small=True, seed=rate)
    path = encodec_reference.save_th(
        reference, tmp_path_factory.mktemp("th") / f"encodec_{rate // 1000}khz-x.th"
    )
    return reference, import_encodec(path).eval()


def compare(encodec_reference, reference, model, wav, bandwidth):
    frames = encodec_reference.reference_encode(reference, wav, bandwidth)
    expected = torch.cat([codes for codes, _ in frames], -1)
    codes = model.encode(wav, bandwidth=bandwidth)
    assert torch.equal(codes[:, 0], expected)
    scales = None
    if frames[0][1] is not None:
        scales = torch.cat([scale for _, scale in frames], 1)
        torch.testing.assert_close(model.segment_scales(wav), scales, rtol=0, atol=0)
    audio = encodec_reference.reference_decode(reference, frames, wav.shape[-1])
    decoded = model.decode(codes, wav.shape[-1], scales=scales)
    torch.testing.assert_close(decoded, audio, atol=1e-4, rtol=0)


def test_imported_models_give_the_reference_codes_and_audio(pair, encodec_reference):
    reference, model = pair
    generator = torch.Generator().manual_seed(1)
    for length in SMALL_LENGTHS[model.sample_rate]:
        wav = torch.randn(2, model.channels, length, generator=generator) * 0.3
        for bandwidth in reference.target_bandwidths:
            compare(encodec_reference, reference, model, wav, bandwidth)


def test_imported_codebooks_count_as_initialised_with_encodec_statistics(pair):
    reference, model = pair
    codebook = model.quantizer._codebook
    assert bool(codebook.initted)
    layer = reference.quantizer.vq.layers[3]._codebook
    assert torch.equal(codebook.cluster_size[3], layer.cluster_size)
    assert torch.equal(codebook.embed_avg[3], layer.embed_avg)


def test_the_architecture_is_read_off_the_checkpoint(pair):
    reference, model = pair
    seanet = model.config.part("encoder")[1]
    assert seanet.ratios == list(reference.decoder.ratios)
    assert seanet.causal == (model.sample_rate == 24000)
    assert seanet.norm == ("weight_norm" if model.sample_rate == 24000 else "time_group_norm")
    assert model.levels == reference.quantizer.n_q and model.codebook_size == 64
    assert (model.config.segment is None) == (model.sample_rate == 24000)


@pytest.mark.parametrize("spelling", ["old", "new"])
def test_hugging_face_folders_import_like_the_original(pair, tmp_path, spelling):
    """A transformers EncodecModel folder (its key names and config.json fields), with
    weight norm in either spelling, gives the same model as the .th file."""
    import json

    from safetensors.torch import save_file

    reference, model = pair
    state = {}
    for key, tensor in reference.state_dict().items():
        key = key.replace("quantizer.vq.layers.", "quantizer.layers.")
        key = key.replace("._codebook.", ".codebook.").replace(".model.", ".layers.")
        key = key.replace(".conv.conv.", ".conv.").replace(".convtr.convtr.", ".conv.")
        key = key.replace(".conv.norm.", ".norm.").replace(".convtr.norm.", ".norm.")
        if spelling == "new":
            key = key.replace(".weight_g", ".parametrizations.weight.original0")
            key = key.replace(".weight_v", ".parametrizations.weight.original1")
        state[key] = tensor.contiguous()
    save_file(state, tmp_path / "model.safetensors")
    stereo = model.sample_rate == 48000
    hf = {
        "model_type": "encodec",
        "sampling_rate": model.sample_rate,
        "audio_channels": model.channels,
        "use_causal_conv": not stereo,
        "norm_type": "time_group_norm" if stereo else "weight_norm",
        "pad_mode": "reflect",
        "chunk_length_s": 1.0 if stereo else None,
        "overlap": 0.01 if stereo else None,
        "normalize": stereo,
    }
    (tmp_path / "config.json").write_text(json.dumps(hf))
    imported = import_encodec(tmp_path, kind=model.model_id)
    assert imported.config.to_dict() == model.config.to_dict()
    ours = model.state_dict()
    for key, tensor in imported.state_dict().items():
        assert torch.equal(tensor, ours[key]), key


def test_cli_import_then_encode_decode_match_the_reference_at_every_bandwidth(
    tmp_path, encodec_reference
):
    """Full-size EnCodec 24 kHz through the command line: codes exactly EnCodec's at 1.5, 6
    and 24 kbps for three lengths, audio within 1e-4."""
    import soundfile as sf

    from codec.codes_file import read_codes

    reference = encodec_reference.random_encodec(24000, small=False, seed=3)
    th = encodec_reference.save_th(reference, tmp_path / "encodec_24khz-0123abcd.th")
    folder = tmp_path / "imported"
    assert main(["import", str(th), "-o", str(folder)]) == 0
    generator = torch.Generator().manual_seed(2)
    for length in (24000, 9611, 100):
        wav = (torch.randn(1, length, generator=generator) * 0.2).clamp(-1, 1)
        sf.write(tmp_path / "in.wav", wav[0].numpy(), 24000, subtype="FLOAT")
        wav = torch.from_numpy(sf.read(tmp_path / "in.wav", dtype="float32")[0])[None]
        for kbps in (1.5, 6.0, 24.0):
            out = tmp_path / f"{length}-{kbps}.codes"
            assert (
                main(
                    [
                        "encode",
                        str(tmp_path / "in.wav"),
                        "-m",
                        str(folder),
                        "-b",
                        str(kbps),
                        "-o",
                        str(out),
                        "--quiet",
                    ]
                )
                == 0
            )
            codes, header = read_codes(out)
            frames = encodec_reference.reference_encode(reference, wav, kbps)
            assert torch.equal(codes, frames[0][0]), (length, kbps)
            decoded_path = tmp_path / f"{length}-{kbps}.wav"
            assert (
                main(["decode", str(out), "-m", str(folder), "-o", str(decoded_path), "--quiet"])
                == 0
            )
            decoded = torch.from_numpy(sf.read(decoded_path, dtype="float32")[0])
            expected = encodec_reference.reference_decode(reference, frames, length)[0, 0].clamp(
                -1, 1
            )  # as written
            torch.testing.assert_close(decoded, expected, atol=1e-4, rtol=0)


# -- bad checkpoints -------------------------------------------------------------------------


class Payload:
    """Unpickling this creates a file: a checkpoint must never get that far."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.target),))


def test_a_pickle_with_a_payload_is_refused_without_running_it(tmp_path):
    target = tmp_path / "created-by-payload"
    path = tmp_path / "encodec_24khz-evil.th"
    torch.save({"encoder.model.0.conv.conv.weight": Payload(target)}, path)
    with pytest.raises(CheckpointError, match="refused without running it"):
        import_encodec(path)
    assert not target.exists()
    out = tmp_path / "out"
    assert main(["import", str(path), "-o", str(out)]) == 1
    assert not target.exists() and not out.exists()


def test_a_torch_package_archive_is_refused(tmp_path):
    from torch.package import PackageExporter

    path = tmp_path / "model.th"
    with PackageExporter(str(path)) as exporter:
        exporter.save_pickle("model", "model.pkl", {"weights": [1, 2]})
    with pytest.raises(CheckpointError, match="torch.package archive"):
        import_encodec(path)


@pytest.fixture(scope="module")
def small_state(encodec_reference):
    return encodec_reference.random_encodec(24000, small=True, seed=5).state_dict()


def test_damaged_checkpoints_are_one_line_naming_the_problem(tmp_path, small_state, capsys):
    cases = {}
    cases["truncated.th"] = None
    cases["not-a-checkpoint.th"] = b"RIFF....WAVEfmt "
    key = "encoder.model.3.conv.conv.weight_v"
    cases["missing.th"] = {k: v for k, v in small_state.items() if k != key}
    cases["unknown.th"] = small_state | {"encoder.model.3.conv.conv.extra": torch.zeros(1)}
    cases["shape.th"] = small_state | {key: torch.zeros(3, 3, 3)}
    cases["not-tensors.th"] = {"encoder.model.0.conv.conv.weight_v": [1, 2, 3]}
    save_th_bytes = tmp_path / "whole.th"
    torch.save(small_state, save_th_bytes)
    expected = {
        "truncated.th": "not a readable PyTorch checkpoint",
        "not-a-checkpoint.th": "not a readable PyTorch checkpoint",
        "missing.th": f"missing EnCodec tensor {key}",
        "unknown.th": "unknown EnCodec tensor encoder.model.3.conv.conv.extra",
        "shape.th": f"{key} has shape",
        "not-tensors.th": "is not a named tensor",
    }
    for name, content in cases.items():
        path = tmp_path / f"encodec_24khz-{name}"
        if content is None:
            path.write_bytes(save_th_bytes.read_bytes()[:5000])
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content, path)
        out = tmp_path / f"out-{name}"
        assert main(["import", str(path), "-o", str(out)]) == 1, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected[name] in err and path.name in err, err
        assert not out.exists()


def test_an_existing_model_folder_is_kept_unless_forced(tmp_path, small_state, capsys):
    path = tmp_path / "encodec_24khz-a.th"
    torch.save(small_state, path)
    out = tmp_path / "model"
    assert main(["import", str(path), "-o", str(out)]) == 0
    before = (out / "model.safetensors").read_bytes()
    assert main(["import", str(path), "-o", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["import", str(path), "-o", str(out), "--force"]) == 0
    assert (out / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encodec_24khz-a.th", "model"]


def test_offline_known_names_fail_in_one_line(tmp_path, monkeypatch, capsys):
    from codec.models import download

    monkeypatch.setenv("CODEC_CACHE", str(tmp_path / "cache"))
    entry = download.KNOWN_CHECKPOINTS["encodec_24khz"]
    offline = type(entry)(
        url="http://127.0.0.1:1/encodec_24khz-d7cc33bc.th",
        sha256_prefix=entry.sha256_prefix,
        filename=entry.filename,
    )
    monkeypatch.setitem(download.KNOWN_CHECKPOINTS, "encodec_24khz", offline)
    assert main(["import", "encodec_24khz"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()  # "downloading ...", then the error
    assert lines[-1].startswith("codec import: ") and "no network" in lines[-1]
    assert not any("Traceback" in line for line in lines)


def test_imported_models_load_by_name_from_the_cache(tmp_path, monkeypatch, small_state):
    monkeypatch.setenv("CODEC_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "encodec_24khz-b.th"
    torch.save(small_state, path)
    assert main(["import", str(path)]) == 0
    from codec.models.names import resolve_model

    folder = resolve_model("encodec_24khz")
    assert folder == tmp_path / "cache" / "models" / "encodec_24khz"
    assert Codec.from_pretrained(folder).model_id == "encodec_24khz"


def test_zip_without_package_markers_is_read_as_a_checkpoint(tmp_path, small_state):
    path = tmp_path / "encodec_24khz-c.th"
    torch.save(small_state, path)
    assert zipfile.is_zipfile(path)
    assert import_encodec(path).levels == 8


def test_ecdc_files_decode_and_describe_with_the_imported_model(
    tmp_path, monkeypatch, capsys, encodec_reference
):
    """`codec decode X.ecdc` against the bytes encodec.compress(use_lm=False) writes, with -m
    and, without it, with the imported model of the name the file gives."""
    import soundfile as sf
    from encodec import compress

    monkeypatch.setenv("CODEC_CACHE", str(tmp_path / "cache"))
    for rate, length in ((24000, 7001), (48000, 48000 + 20000)):
        reference = encodec_reference.random_encodec(rate, small=False, seed=11)
        th = encodec_reference.save_th(reference, tmp_path / f"encodec_{rate // 1000}khz-0.th")
        assert main(["import", str(th)]) == 0
        wav = torch.randn(reference.channels, length, generator=torch.Generator().manual_seed(4))
        wav = (wav * 0.2).clamp(-1, 1)
        path = tmp_path / f"{rate}.ecdc"
        path.write_bytes(compress(reference, wav, use_lm=False))
        assert main(["info", str(path)]) == 0
        assert f"model encodec_{rate // 1000}khz" in capsys.readouterr().out
        out = tmp_path / f"{rate}.wav"
        assert main(["decode", str(path), "-o", str(out), "--quiet"]) == 0
        decoded = torch.from_numpy(sf.read(out, dtype="float32", always_2d=True)[0].T.copy())
        with torch.no_grad():
            expected = encodec_reference.reference_decode(
                reference, encodec_reference.reference_encode(reference, wav), length
            )[0]
        torch.testing.assert_close(decoded, expected.clamp(-1, 1), atol=1e-4, rtol=0)


def test_streaming_an_imported_model_equals_offline_once_the_first_chunk_covers_the_padding(
    encodec_reference,
):
    """EnCodec pads causal convs by reflection, which needs samples a stream has not seen:
    the bottleneck's last conv pads 6 frames, so a first chunk of at least 7 frames gives the
    offline codes and audio exactly; chunks of one frame from the start give other codes for
    the first 7 frames only (measured here; the LSTM carries the difference, below a code)."""
    reference = encodec_reference.random_encodec(24000, small=True, seed=3)
    model = import_encodec(
        encodec_reference.save_th(reference, Path(tempfile.mkdtemp()) / "encodec_24khz-s.th")
    )
    model = model.eval()
    hop = model.hop_length
    wav = torch.randn(1, 1, hop * 60, generator=torch.Generator().manual_seed(0)) * 0.2
    offline = model.encode(wav)
    for first, differing in ((7, 0), (16, 0), (1, 7)):
        with model.streaming():
            parts = [model.encode(wav[..., : first * hop])]
            parts += [
                model.encode(wav[..., k : k + hop]) for k in range(first * hop, wav.shape[-1], hop)
            ]
        streamed = torch.cat(parts, -1)
        frames = (streamed != offline).flatten(1, 2).any(1)[0].nonzero().flatten().tolist()
        assert frames == list(range(differing)), (first, frames)
    audio = model.decode(offline)
    with model.streaming():
        parts = [model.decode(offline[..., :7])]
        parts += [model.decode(offline[..., k : k + 1]) for k in range(7, offline.shape[-1])]
    torch.testing.assert_close(torch.cat(parts, -1), audio, atol=1e-5, rtol=0)
