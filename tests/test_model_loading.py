"""Loading a model folder from a stranger: any damage to config.json or the weights gives a
ModelFormatError naming the problem, never another exception, and never a large allocation."""

import json
import shutil

import pytest
import torch
from conftest import file_size_limit, fuzz, tiny_codec
from hypothesis import given
from hypothesis import strategies as st

from codec.model import Codec, CodecConfig, ModelFormatError

FIELDS = [f for f in CodecConfig.__dataclass_fields__ if f != "quantizer"] + ["weights_hash"]
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
def saved(tmp_path_factory):
    return tiny_codec().save_pretrained(tmp_path_factory.mktemp("model") / "m")


def copy_of(saved, tmp_path_factory):
    target = tmp_path_factory.mktemp("case") / "m"
    shutil.copytree(saved, target)
    return target


def test_a_config_that_describes_more_weights_than_the_file_holds_allocates_nothing(
    saved, tmp_path
):
    folder = tmp_path / "m"
    shutil.copytree(saved, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(n_filters=4096, dimension=8192, ratios=[64, 64, 64, 64, 64, 64, 64, 64])
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="describes at least .* bytes of weights"):
        Codec.from_pretrained(folder)


@fuzz(120)
@given(field=st.sampled_from(FIELDS), value=JSON_VALUES)
def test_fuzz_config_fields(saved, tmp_path_factory, field, value):
    folder = copy_of(saved, tmp_path_factory)
    config = json.loads((folder / "config.json").read_text())
    config[field] = value
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
    "config",
    [
        {},
        {"ratios": [2, 4, 5, 8], "n_filters": 8, "lstm": 0},
        {"groups": 4, "dimension": 64, "codebook_size": 4096, "levels": 12},
        {"n_residual_layers": 3, "compress": 1, "residual_kernel_size": 7, "codebook_dim": 8},
    ],
)
def test_the_size_bound_never_exceeds_a_real_model(config):
    model = Codec(CodecConfig(**config))
    floats = sum(t.numel() for t in model.state_dict().values() if torch.is_tensor(t))
    assert 0 < model.config.least_weight_bytes() <= 4 * floats


def test_a_failed_model_write_raises_the_os_reason_and_leaves_the_old_model(saved, tmp_path):
    """Fault injection: a file-size limit below the weights' size (RLIMIT_FSIZE, in a child)."""
    import subprocess
    import sys

    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    script = (
        "import sys\n"
        "from codec.model import Codec\n"
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
