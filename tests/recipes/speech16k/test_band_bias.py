"""recipes/speech16k/band_bias.py on real speech: a gain shows as that bias in every band, a
low-pass as a bias above its corner only; bad inputs are one line each."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torchaudio.functional as AF

SCRIPT = Path(__file__).resolve().parents[3] / "recipes" / "speech16k" / "band_bias.py"
spec = importlib.util.spec_from_file_location("band_bias", SCRIPT)
band_bias = importlib.util.module_from_spec(spec)
sys.modules["band_bias"] = band_bias
spec.loader.exec_module(band_bias)


def test_gain_and_lowpass_show_where_they_act(fsdd_root):
    paths = sorted(fsdd_root.glob("*.wav"))[:3]
    bias, error, hz, frames = band_bias.band_bias(paths, lambda wav: wav * 0.5, 16000, 1)
    speech = hz < 3500  # FSDD is 8 kHz: nothing above 4 kHz to compare
    assert frames > 20 and speech.sum() > 40
    assert (bias[speech] + 6.02).abs().max() < 0.01 and (error[speech] - 6.02).abs().max() < 0.01
    bias, _, hz, _ = band_bias.band_bias(
        paths,
        lambda wav: AF.lowpass_biquad(AF.lowpass_biquad(wav, 16000, 1500), 16000, 1500),
        16000,
        1,
    )
    assert bias[hz < 500].abs().max() < 1.0 and bias[(hz > 2500) & (hz < 3500)].max() < -10


def test_a_bad_file_is_one_line_and_the_rest_still_counts(
    list_with_a_broken_file, saved_model, tmp_path, monkeypatch, capsys
):
    listing, broken = list_with_a_broken_file
    argv = ["band_bias.py", "-m", str(saved_model), "--files-from", str(listing)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stop:
        band_bias.main()
    assert stop.value.code == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and str(broken) in err
    assert ": 1 files," in out and out.count("|") > 8
    monkeypatch.setattr(sys, "argv", [*argv[:4], str(tmp_path / "missing.txt")])
    with pytest.raises(SystemExit) as stop:
        band_bias.main()
    assert "missing.txt: cannot read the file list" in str(stop.value.code)
    monkeypatch.setattr(sys, "argv", ["band_bias.py", "-m", "no_such_model", *argv[3:]])
    with pytest.raises(SystemExit) as stop:
        band_bias.main()
    assert str(stop.value.code).startswith("no_such_model: no model folder")
