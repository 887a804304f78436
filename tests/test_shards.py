"""Token-stream shards: layout, resuming, failures, and a round trip back to audio."""

import json
import shutil
from dataclasses import asdict

import numpy as np
import torch
from einops import rearrange

from codec.cli import main
from codec.codes_file import read_codes
from codec.coding import Windowing, decode_codes, encode_batch, load_for_model
from codec.models import Codec
from codec.shards import flatten_codes


def unflatten_codes(rows: np.ndarray, groups: int) -> torch.Tensor:
    """A shard's rows (frames, levels * groups) -> codes (groups, levels, frames): the inverse
    of flatten_codes, as a language-model user reads tokens back."""
    return rearrange(
        torch.from_numpy(np.asarray(rows, dtype=np.int64)), "f (q g) -> g q f", g=groups
    )


def test_flattening_is_level_major():
    codes = torch.arange(2 * 3 * 4).reshape(2, 3, 4)  # (g, q, f)
    rows = flatten_codes(codes)
    assert rows.shape == (4, 6) and rows[0].tolist() == [0, 12, 4, 16, 8, 20]
    assert torch.equal(unflatten_codes(rows, 2), codes)


def test_tokenize_resumes_and_round_trips(fsdd_root, saved_model, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for f in sorted(fsdd_root.glob("*.wav"))[:5]:
        shutil.copy(f, data / f.name)
    (data / "broken.wav").write_text("not audio")
    out = tmp_path / "tokens"
    args = [
        "tokenize",
        str(data),
        "-m",
        str(saved_model),
        "-o",
        str(out),
        "--shard-size",
        "2",
        "-q",
        "3",
    ]
    assert main(args) == 1  # the broken file is reported
    err = capsys.readouterr().err
    assert "broken.wav" in err and "3 shard(s) written" in err
    # the documented way to read a shard: plain .npy, memory-mapped, no pickle
    codes = np.load(out / "shard_00000.npy", mmap_mode="r", allow_pickle=False)
    index = np.load(out / "shard_00000.index.npy", allow_pickle=False)
    assert codes.dtype == np.uint16 and codes.shape[1] == 3 * 2
    assert index["frames"].sum() == codes.shape[0] and index["offset"][0] == 0

    model = Codec.from_pretrained(saved_model)
    # meta.json says what every .codes header made with these settings says about the model
    meta = json.loads((out / "meta.json").read_text())
    encoded = tmp_path / "first.codes"
    main(["encode", str(index["path"][0]), "-m", str(saved_model), "-o", str(encoded), "-q", "3"])
    header = asdict(read_codes(encoded)[1])
    assert meta.pop("layout") and meta == {name: header[name] for name in meta}
    windowing = Windowing.for_model(model)
    path = index["path"][1]
    row = index[1]
    tokens = unflatten_codes(codes[row["offset"] : row["offset"] + row["frames"]], model.groups)
    audio = load_for_model(model, path, windowing)
    (direct,) = encode_batch(model, [audio.wav], 3, windowing)
    assert torch.equal(tokens, direct)
    decoded = decode_codes(model, tokens, audio.length, windowing)
    assert decoded.shape == (1, audio.length) and torch.isfinite(decoded).all()

    before = (out / "shard_00000.npy").stat().st_mtime_ns
    main(args)
    assert "3 already done" in capsys.readouterr().err
    assert (out / "shard_00000.npy").stat().st_mtime_ns == before
