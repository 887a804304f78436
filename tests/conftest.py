import csv
import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# `make fuzz` sets FUZZ_SCALE (e.g. 20): the fuzz tests run that many times more examples, drawn
# afresh each run instead of the fixed, derandomized set that CI runs.
FUZZ_SCALE = int(os.environ.get("FUZZ_SCALE", "1"))


def file_size_limit(limit: int):
    """A subprocess preexec_fn for fault injection without mocks: the child may write files
    of at most `limit` bytes, and a write past that fails with EFBIG (SIGXFSZ ignored) the way
    a full disk fails with ENOSPC."""
    import resource
    import signal

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def csv_rows(path) -> list[dict]:
    """The rows of a CSV file with a header line (codec eval's results.csv), as dicts."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def fuzz(examples: int) -> settings:
    """Hypothesis settings of a fuzz test: `examples` fixed examples in CI, FUZZ_SCALE times as
    many fresh ones under `make fuzz`."""
    return settings(
        max_examples=examples * FUZZ_SCALE,
        deadline=None,
        derandomize=FUZZ_SCALE == 1,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def fsdd_root() -> Path:
    """Real speech (Free Spoken Digit Dataset), from the FSDD_ROOT setting (the Makefile sets it
    to ../shared/data/fsdd/recordings)."""
    root = os.environ.get("FSDD_ROOT")
    if not root or not Path(root).is_dir():
        pytest.skip("FSDD_ROOT is not set to the FSDD recordings folder")
    return Path(root)


def tiny_codec(**overrides):
    """A small randomly initialised Codec (16 kHz, hop 64) for tests; `overrides` are fields of
    the flat (version 1) config, which CodecConfig upgrades."""
    from codec.models import Codec, CodecConfig

    torch.manual_seed(0)
    flat = dict(
        sample_rate=16000,
        n_filters=4,
        dimension=16,
        ratios=[4, 4, 4],
        lstm=1,
        groups=2,
        levels=4,
        codebook_size=64,
        model_id="tiny",
        quantizer={"decay": 0.9, "quantize_dropout": True},
    )
    return Codec(CodecConfig.from_dict(flat | overrides))


@pytest.fixture
def saved_model(tmp_path):
    """Folder of a saved tiny model."""
    return tiny_codec().save_pretrained(tmp_path / "model")
