"""`codec export`, `codec encode/decode --runtime onnx`, the torch-free decoding example, and
bad exported folders: each problem one line."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from references import reference

reference("onnxruntime")  # what the exported graphs are checked in
reference("onnxscript")

from codec.cli import main  # noqa: E402
from codec.codes_file import read_codes  # noqa: E402
from codec.models import Codec  # noqa: E402
from codec.runtime import cache_folder  # noqa: E402
from codec.runtime.onnx import OnnxGraphs, OnnxModelError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported_model(tiny_codec, tmp_path_factory):
    """(model folder, exported folder) of a small causal zero-padded model, exported once by
    `codec export`."""
    folder = tmp_path_factory.mktemp("cli")
    model = tiny_codec(causal=True, pad_mode="zeros").eval()
    with torch.no_grad():
        model.quantizer._codebook.embed.normal_(0.0, 0.3)
    saved = model.save_pretrained(folder / "model")
    assert main(["export", str(saved), "-o", str(folder / "onnx")]) == 0
    return saved, folder / "onnx"


@pytest.fixture
def cache(exported_model, tmp_path, monkeypatch):
    """A cache holding the exported graphs where `--runtime onnx` looks for them."""
    monkeypatch.setenv("CODEC_CACHE", str(tmp_path / "cache"))
    saved, graphs = exported_model
    target = cache_folder(Codec.from_pretrained(saved))
    shutil.copytree(graphs, target)
    return target


def _speech(fsdd_root: Path, folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for source in sorted(fsdd_root.glob("*.wav"))[:count]:
        shutil.copy(source, folder / source.name)
        paths.append(folder / source.name)
    return paths


def test_encode_and_decode_on_onnx_runtime_give_the_torch_codes_and_audio(
    fsdd_root, exported_model, cache, tmp_path
):
    """Real speech, several files in one batch (each its own length), streamed chunk by chunk
    as a causal model is: the ONNX step graphs give the layers' codes, and decoding gives
    their audio."""
    saved, _ = exported_model
    sources = _speech(fsdd_root, tmp_path / "in", 3)
    for runtime in ("torch", "onnx"):
        args = ["encode", *map(str, sources), "-m", str(saved), "-o", str(tmp_path / runtime)]
        assert main([*args, "--runtime", runtime, "--chunk-seconds", "0.25", "--quiet"]) == 0
    for source in sources:
        name = source.with_suffix(".codes").name
        torch_codes, header = read_codes(tmp_path / "torch" / name)
        onnx_codes, _ = read_codes(tmp_path / "onnx" / name)
        assert np.array_equal(onnx_codes.numpy(), torch_codes.numpy())
        wavs = {}
        for runtime in ("torch", "onnx"):
            out = tmp_path / f"{runtime}.wav"
            args = ["decode", str(tmp_path / "torch" / name), "-m", str(saved), "-o", str(out)]
            assert main([*args, "--runtime", runtime, "--force", "--quiet"]) == 0
            wavs[runtime], _ = sf.read(str(out), dtype="float32")
        assert len(wavs["onnx"]) == header.length
        # 16-bit WAV: equal to within one step of its quantisation
        np.testing.assert_allclose(wavs["onnx"], wavs["torch"], atol=2 / 32768, rtol=0)


def test_the_example_decodes_without_torch(fsdd_root, exported_model, tmp_path):
    """scripts/onnx_decode.py in a Python that cannot import torch, against `codec decode`."""
    saved, graphs = exported_model
    (source,) = _speech(fsdd_root, tmp_path / "in", 1)
    codes = tmp_path / "a.codes"
    assert main(["encode", str(source), "-m", str(saved), "-o", str(codes), "--quiet"]) == 0
    assert main(["decode", str(codes), "-m", str(saved), "-o", str(tmp_path / "torch.wav")]) == 0
    block = "import sys; sys.modules['torch'] = None; import runpy; sys.argv = sys.argv[1:]; "
    run = block + "runpy.run_path(sys.argv[0], run_name='__main__')"
    script = ROOT / "scripts" / "onnx_decode.py"
    out = tmp_path / "onnx.wav"
    done = subprocess.run(
        [sys.executable, "-c", run, str(script), str(codes), str(graphs), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    ours, _ = sf.read(str(out), dtype="float32")
    theirs, _ = sf.read(str(tmp_path / "torch.wav"), dtype="float32")
    np.testing.assert_allclose(ours, theirs, atol=2 / 32768, rtol=0)
    # and a damaged graph is one line
    broken = tmp_path / "broken"
    shutil.copytree(graphs, broken)
    (broken / "decoder.onnx").write_bytes(b"not an onnx file")
    args = [str(script), str(codes), str(broken), "-o", str(tmp_path / "x.wav")]
    done = subprocess.run(
        [sys.executable, "-c", run, *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "decoder.onnx" in done.stderr


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", "truncated, damaged or replaced"),
        ("foreign", "truncated, damaged or replaced"),
        ("no_manifest", "not an exported model"),
        ("bad_manifest", "unreadable manifest"),
    ],
)
def test_a_damaged_or_foreign_folder_is_one_line(exported_model, tmp_path, damage, message):
    _, graphs = exported_model
    folder = tmp_path / "graphs"
    shutil.copytree(graphs, folder)
    encoder = folder / "encoder.onnx"
    if damage == "truncate":
        encoder.write_bytes(encoder.read_bytes()[:1000])
    elif damage == "foreign":
        encoder.write_bytes(b"\x08\x07" + bytes(200))
    elif damage == "no_manifest":
        (folder / "manifest.json").unlink()
    else:
        (folder / "manifest.json").write_text("{not json")
    with pytest.raises(OnnxModelError, match=message) as error:
        OnnxGraphs.load(folder)
    assert len(str(error.value).splitlines()) == 1 and str(folder) in str(error.value)


def test_graphs_of_another_model_are_refused(exported_model, tiny_codec):
    """Graphs exported from one model, attached to another: one line naming both."""
    from codec.runtime.onnx import attach

    _, graphs = exported_model
    other = tiny_codec(causal=True, pad_mode="zeros", codebook_size=32).eval()
    with pytest.raises(OnnxModelError, match="exported from model") as error:
        attach(other, OnnxGraphs.load(graphs))
    assert len(str(error.value).splitlines()) == 1


def test_export_refuses_to_overwrite_and_a_usage_error_is_one_line(exported_model, capsys):
    saved, graphs = exported_model
    assert main(["export", str(saved), "-o", str(graphs)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["encode", "x.wav", "-m", str(saved), "--runtime", "onnx", "--device", "meta"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1


def test_graphs_an_older_codec_left_in_the_cache_are_exported_anew(exported_model, cache):
    """A cached folder without the current revision (its step graphs built otherwise) is
    replaced once; the current one is used as it is."""
    import json

    from codec.runtime import use_onnx
    from codec.runtime.export import REVISION

    saved, _ = exported_model
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["revision"] == REVISION
    del manifest["revision"]  # as revision 1 wrote it
    (cache / "manifest.json").write_text(json.dumps(manifest))
    said = []
    model = use_onnx(Codec.from_pretrained(saved), log=said.append)
    assert len(said) == 1 and "exporting" in said[0]
    assert model.runtime.graphs.manifest["revision"] == REVISION
    use_onnx(Codec.from_pretrained(saved), log=said.append)
    assert len(said) == 1
