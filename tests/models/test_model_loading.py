"""Loading a model folder from a stranger: any damage to config.json or the weights gives a
ModelFormatError naming the problem, never another exception, and never a large allocation."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from fuzzing import fuzz
from hypothesis import given
from hypothesis import strategies as st

from codec.models import Codec, CodecConfig, ModelFormatError
from codec.models.builders import GRVQOptions, SEANetOptions

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TOP = ["sample_rate", "channels", "dimension", "segment", "loudness_lufs", "model_id"]
FIELDS = (
    TOP
    + ["weights_hash", "version", "encoder", "decoder", "quantizer"]
    + [f"encoder.{f}" for f in SEANetOptions.__dataclass_fields__]
    + [f"decoder.{f}" for f in SEANetOptions.__dataclass_fields__]
    + [f"quantizer.{f}" for f in GRVQOptions.__dataclass_fields__]
    + ["encoder.name", "quantizer.name", "segment.seconds"]
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_codec):
    return tiny_codec().save_pretrained(tmp_path_factory.mktemp("model") / "m")


def copy_of(saved, tmp_path_factory):
    target = tmp_path_factory.mktemp("case") / "m"
    shutil.copytree(saved, target)
    return target


def set_field(config: dict, path: str, value) -> None:
    *parents, name = path.split(".")
    for key in parents:
        config = config.setdefault(key, {}) if isinstance(config.get(key), dict) else config
    config[name] = value


def test_a_config_that_describes_more_weights_than_the_file_holds_allocates_nothing(
    saved, tmp_path
):
    """The model is built on the meta device and compared with the file's header first: a
    config asking for terabytes is refused at once."""
    folder = tmp_path / "m"
    shutil.copytree(saved, folder)
    config = json.loads((folder / "config.json").read_text())
    huge = {"n_filters": 4096, "ratios": [64, 64, 64]}
    config.update(dimension=8192, encoder=config["encoder"] | huge)
    config["decoder"] |= huge
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="weights do not fit the config .*shape"):
        Codec.from_pretrained(folder)


def test_a_missing_or_unexpected_tensor_is_named(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "m"
    shutil.copytree(saved, folder)
    state = load_file(folder / "model.safetensors")
    key = sorted(state)[3]
    save_file({k: v for k, v in state.items() if k != key}, folder / "model.safetensors")
    with pytest.raises(ModelFormatError, match=f"missing {key}"):
        Codec.from_pretrained(folder)
    save_file(state | {"extra.weight": torch.zeros(2)}, folder / "model.safetensors")
    with pytest.raises(ModelFormatError, match="unexpected extra.weight"):
        Codec.from_pretrained(folder)


def test_weights_stored_in_float16_load(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "m"
    shutil.copytree(saved, folder)
    state = load_file(folder / "model.safetensors")
    half = {k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()}
    save_file(half, folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    del config["weights_hash"]  # the hash is of the weights as stored
    (folder / "config.json").write_text(json.dumps(config))
    model = Codec.from_pretrained(folder)
    assert model.encoder.model[0].conv.weight.dtype == torch.float32
    wav = torch.randn(1, 1, 1000) * 0.1
    reference = Codec.from_pretrained(saved)
    torch.testing.assert_close(
        model.decode(reference.encode(wav)),
        reference.decode(reference.encode(wav)),
        atol=2e-3,
        rtol=0,
    )


def test_a_model_rounded_and_saved_in_float16_loads_as_itself_in_half_the_bytes(
    tiny_codec, tmp_path
):
    from safetensors.torch import load_file

    from codec.models.folder import round_to_storage

    model = tiny_codec()
    full = model.save_pretrained(tmp_path / "full")
    round_to_storage(model, torch.float16)
    assert model.weights_hash() != Codec.from_pretrained(full).model_hash  # rounding changed it
    half = model.save_pretrained(tmp_path / "half", storage=torch.float16)
    stored = load_file(half / "model.safetensors")
    floats = [v for v in stored.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    size = (half / "model.safetensors").stat().st_size
    assert size < 0.6 * (full / "model.safetensors").stat().st_size
    loaded = Codec.from_pretrained(half)  # the recorded hash is checked on load
    assert loaded.model_hash == model.weights_hash()
    wav = torch.randn(1, 1, 1000) * 0.1
    codes = model.eval().encode(wav)
    assert torch.equal(loaded.encode(wav), codes)
    torch.testing.assert_close(loaded.decode(codes), model.decode(codes), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="storage dtype"):
        round_to_storage(model, torch.int8)


@pytest.mark.parametrize("name", ["flat_v1_tiny", "flat_v1_tiny_causal"])
def test_folders_with_the_flat_config_load_and_code_as_they_did(name):
    """Fixtures written by the flat-config code (tests/fixtures): upgraded on read, with the
    codes and audio that code gave (a causal flat model padded with zeros)."""
    from safetensors.torch import load_file

    folder = FIXTURES / name
    expected = load_file(folder / "expected.safetensors")
    model = Codec.from_pretrained(folder)
    seanet = model.config.part("encoder")[1]
    assert seanet.pad_mode == ("zeros" if seanet.causal else "reflect")
    codes = model.encode(expected["audio"])
    assert torch.equal(codes, expected["codes"])
    decoded = model.decode(codes, length=expected["audio"].shape[-1])
    torch.testing.assert_close(decoded, expected["decoded"], atol=1e-5, rtol=1e-4)


@fuzz(120)
@given(field=st.sampled_from(FIELDS), value=JSON_VALUES)
def test_fuzz_config_fields(saved, tmp_path_factory, field, value):
    folder = copy_of(saved, tmp_path_factory)
    config = json.loads((folder / "config.json").read_text())
    set_field(config, field, value)
    (folder / "config.json").write_text(json.dumps(config))
    try:
        Codec.from_pretrained(folder)
    except ModelFormatError as err:
        assert str(err)
    # a value that happens to be valid (e.g. the same model id) may load; nothing else may happen


@fuzz(60)
@given(
    flips=st.lists(st.tuples(st.integers(0, 2**31), st.integers(1, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 2**31)),
)
def test_fuzz_weights_bytes(saved, tmp_path_factory, flips, cut):
    folder = copy_of(saved, tmp_path_factory)
    data = bytearray((folder / "model.safetensors").read_bytes())
    for position, xor in flips:
        data[position % len(data)] ^= xor
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    (folder / "model.safetensors").write_bytes(bytes(data))
    try:
        Codec.from_pretrained(folder)
    except ModelFormatError as err:
        assert "model.safetensors" in str(err) or "config.json" in str(err)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"encoder": {"ratios": [2, 4, 5, 8], "n_filters": 8, "lstm": 0, "causal": True}},
        {"dimension": 64, "quantizer": {"groups": 4, "codebook_size": 4096, "levels": 12}},
        {"encoder": {"norm": "time_group_norm"}, "quantizer": {"codebook_dim": 8}},
    ],
)
def test_the_meta_device_guard_accepts_every_real_model(changes, tmp_path):
    config = CodecConfig(sample_rate=16000).replace(**changes)
    folder = Codec(config).save_pretrained(tmp_path / "m")
    loaded = Codec.from_pretrained(folder, inference=False)
    assert loaded.config.to_dict() == config.to_dict()


def test_a_failed_model_write_raises_the_os_reason_and_leaves_the_old_model(
    saved, tmp_path, file_size_limit
):
    """Fault injection: a file-size limit below the weights' size (RLIMIT_FSIZE, in a child)."""
    import subprocess
    import sys

    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    script = (
        "import sys\n"
        "from codec.models import Codec\n"
        "model = Codec.from_pretrained(sys.argv[1])\n"
        "try:\n"
        "    model.save_pretrained(sys.argv[1])\n"
        "except OSError as err:\n"
        "    print(err.strerror)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)],
        preexec_fn=file_size_limit(4096),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "File too large"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no temp file either


FRAME_RATE = {"n_filters": 8, "hidden": 16, "n_blocks": 1, "hop_length": 8, "istft_hop": 4}
PARTS = {  # (encoder, decoder) of every architecture, small, hop 8
    "seanet": ({"name": "seanet", "n_filters": 4, "ratios": [4, 2], "lstm": 0},) * 2,
    "dac": (
        {"name": "dac", "n_filters": 4, "rates": [2, 4]},
        {"name": "dac", "n_filters": 16, "rates": [4, 2]},
    ),
    "stft": (
        {"name": "stft", "n_fft": 16} | FRAME_RATE,
        {"name": "istft", "n_fft": 16} | FRAME_RATE,
    ),
}


@pytest.mark.parametrize("architecture", sorted(PARTS))
def test_a_loaded_folded_model_saves_a_folder_that_loads_again(architecture, tmp_path):
    """Loading folds weight norm into plain weights; saving that model again writes the config
    of its folded parts (each part says what that is), so the folder loads as the same model."""
    encoder, decoder = PARTS[architecture]
    torch.manual_seed(0)
    config = CodecConfig(
        sample_rate=16000,
        dimension=16,
        encoder=encoder,
        decoder=decoder,
        quantizer={"name": "grvq", "groups": 2, "levels": 3, "codebook_size": 16},
    )
    first = Codec(config).save_pretrained(tmp_path / "first")
    loaded = Codec.from_pretrained(first)  # folded
    again = Codec.from_pretrained(loaded.save_pretrained(tmp_path / "again"))
    wav = torch.randn(1, 1, 8 * 40) * 0.1
    codes = loaded.encode(wav)
    assert torch.equal(again.encode(wav), codes)
    torch.testing.assert_close(again.decode(codes), loaded.decode(codes))
    saved = json.loads((tmp_path / "again" / "config.json").read_text())
    assert saved["encoder"].get("norm", "none") == "none"


def test_a_config_that_does_not_describe_the_weights_is_not_saved(tiny_codec, tmp_path):
    model = tiny_codec()
    model.config = model.config.replace(quantizer={"levels": 2})  # the model keeps 4 levels
    with pytest.raises(ValueError, match="does not describe its weights"):
        model.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m").exists()
