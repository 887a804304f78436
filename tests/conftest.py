"""Fixtures shared by the whole suite; tests/ mirrors the package (nn/, quantize/, models/,
train/, and the top-level modules here).

Helpers reach tests as fixtures, never by importing a test module or this file:
`tiny_codec` and `file_size_limit` are factories, `csv_rows` and `metrics_records` read a run's
outputs, `tiny_train_overrides` is the Hydra overrides of a seconds-long training run, and
`encodec_reference` and `dac_reference` are the modules tests/models/encodec_reference.py and
tests/models/dac_reference.py (loaded from their files).

The one exception is `fuzz` (tests/fuzzing.py), imported as `from fuzzing import fuzz`: it
returns a Hypothesis `settings` object applied as a decorator, at import time, before any
fixture exists; and a settings profile cannot stand in, because each fuzz test has its own
example count that `make fuzz` multiplies by FUZZ_SCALE, while a profile sets one count for
all. tests/ is on sys.path for it because pytest (default "prepend" import mode) inserts the
folder of this rootdir conftest.py.
"""

import csv
import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent

SEANET = ["n_filters=4", "ratios=[4,4,4]", "lstm=0"]
TINY_TRAIN = (
    "model.dimension=16",
    *(f"model.{part}.{key}" for part in ("encoder", "decoder") for key in SEANET),
    "model.quantizer.levels=3",
    "model.quantizer.codebook_size=16",
    "model.quantizer.kmeans_iters=2",
    "data.count=8",
    "data.seconds=1.0",
    "data.segment_seconds=0.25",
    "data.batch_size=2",
    "discriminator.filters=4",
    "loss.mel_n_ffts=[64,128,256]",
    "loss.n_mels=16",
    "trainer.valid_items=2",
    "trainer.valid_seconds=0.5",
    "trainer.progress=false",
    "trainer.threads=1",
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


@pytest.fixture
def list_with_a_broken_file(fsdd_root, tmp_path) -> tuple[Path, Path]:
    """(a --files-from list of one FSDD recording and one file that is not audio, that file)."""
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not audio")
    listing = tmp_path / "files.txt"
    listing.write_text(f"{sorted(fsdd_root.glob('*.wav'))[0]}\n{broken}\n")
    return listing, broken


def _file_size_limit(limit: int):
    """A subprocess preexec_fn for fault injection without mocks: the child may write files
    of at most `limit` bytes, and a write past that fails with EFBIG (SIGXFSZ ignored) the way
    a full disk fails with ENOSPC."""
    import resource
    import signal

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.fixture(scope="session")
def file_size_limit():
    """`file_size_limit(limit)`: a preexec_fn capping the child's file writes at `limit` bytes."""
    return _file_size_limit


def _csv_rows(path) -> list[dict]:
    """The rows of a CSV file with a header line (codec eval's results.csv), as dicts."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def csv_rows():
    """`csv_rows(path)`: the rows of a CSV file with a header line, as dicts."""
    return _csv_rows


def _metrics_records(run_dir) -> list[dict]:
    """The JSON records a training run logged to run_dir/metrics.jsonl, in order."""
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def metrics_records():
    """`metrics_records(run_dir)`: the records of run_dir/metrics.jsonl, in order."""
    return _metrics_records


@pytest.fixture(scope="session")
def tiny_train_overrides() -> tuple[str, ...]:
    """Hydra overrides of a training run small enough for a test (a few seconds per step),
    to which tests add trainer.steps, run_dir and the like."""
    return TINY_TRAIN


def _tiny_codec(**overrides):
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


@pytest.fixture(scope="session")
def tiny_codec():
    """`tiny_codec(**overrides)`: a small seeded random Codec (16 kHz, hop 64)."""
    return _tiny_codec


@pytest.fixture
def saved_model(tmp_path):
    """Folder of a saved tiny model."""
    return _tiny_codec().save_pretrained(tmp_path / "model")


@pytest.fixture(scope="session")
def encodec_reference():
    """The module tests/models/encodec_reference.py: random_encodec, save_th, reference_encode,
    reference_decode and the rest (see its docstring)."""
    return _load_helper("encodec_reference")


@pytest.fixture(scope="session")
def dac_reference():
    """The module tests/models/dac_reference.py: random_dac, save_pth, reference_encode,
    reference_decode, load_dac, the SMALL and ODD configurations (see its docstring)."""
    return _load_helper("dac_reference")


def _load_helper(name: str):
    """The module tests/models/NAME.py, loaded from its file."""
    spec = importlib.util.spec_from_file_location(name, HERE / "models" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
