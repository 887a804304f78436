"""recipes/speech16k/equalize.py on real speech: it writes the model with the filter folded in
and prints the gain per band before and after; a bad file is one line and the rest still
count; a model it cannot fold into is one line."""

import importlib.util
import sys
from pathlib import Path

import pytest

from codec.models import Codec

SCRIPT = Path(__file__).resolve().parents[3] / "recipes" / "speech16k" / "equalize.py"
spec = importlib.util.spec_from_file_location("equalize_recipe", SCRIPT)
equalize = importlib.util.module_from_spec(spec)
sys.modules["equalize_recipe"] = equalize
spec.loader.exec_module(equalize)


def run(monkeypatch, *argv) -> SystemExit:
    monkeypatch.setattr(sys, "argv", ["equalize.py", *map(str, argv)])
    with pytest.raises(SystemExit) as stop:
        equalize.main()
    return stop.value


def test_the_folded_model_is_written_and_a_bad_file_is_one_line(
    list_with_a_broken_file, tiny_codec, tmp_path, monkeypatch, capsys
):
    listing, broken = list_with_a_broken_file
    model = tiny_codec(causal=True, pad_mode="zeros").save_pretrained(tmp_path / "model")
    out = tmp_path / "equalized"
    stop = run(monkeypatch, model, "--files-from", listing, "-o", out, "--taps", 16)
    assert stop.code == 1
    printed, err = capsys.readouterr()
    assert err.count("\n") == 1 and str(broken) in err
    before, after = (line.split(":")[-1].split() for line in printed.splitlines()[:2])
    assert len(before) == len(after) == 12 and "still to go" in printed
    kernel = Codec.from_pretrained(model).config.decoder["last_kernel_size"]
    assert Codec.from_pretrained(out).config.decoder["last_kernel_size"] == kernel + 15


def test_a_model_without_a_causal_seanet_decoder_is_one_line(
    list_with_a_broken_file, saved_model, tmp_path, monkeypatch
):
    listing, _ = list_with_a_broken_file
    stop = run(monkeypatch, saved_model, "--files-from", listing, "-o", tmp_path / "out")
    assert "folds only into a causal SEANet decoder" in str(stop.code)
    assert not (tmp_path / "out").exists()
    stop = run(monkeypatch, tmp_path / "none", "--files-from", listing, "-o", tmp_path / "out")
    assert "none" in str(stop.code)


def test_a_filter_too_long_and_an_unwritable_output_are_one_line(
    list_with_a_broken_file, tiny_codec, tmp_path, monkeypatch
):
    listing, _ = list_with_a_broken_file
    model = tiny_codec(causal=True, pad_mode="zeros").save_pretrained(tmp_path / "model")
    stop = run(monkeypatch, model, "--files-from", listing, "-o", tmp_path / "out", "--taps", 600)
    assert "600-tap output filter" in str(stop.code) and "last_kernel_size" in str(stop.code)
    (tmp_path / "a_file").write_text("")
    stop = run(monkeypatch, model, "--files-from", listing, "-o", tmp_path / "a_file" / "out")
    assert str(stop.code).startswith(f"{tmp_path / 'a_file' / 'out'}: cannot write the model")
