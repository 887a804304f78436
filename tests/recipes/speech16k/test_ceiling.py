"""recipes/speech16k/ceiling.py on real speech: its coded rows are what `codec encode` and
`codec decode` give, its scores are `codec eval`'s, and bad inputs are one line each."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torchaudio.functional as AF

from codec.audio import read_for
from codec.coding import Windowing, decode_codes, encode_batch
from codec.models import Codec

SCRIPT = Path(__file__).resolve().parents[3] / "recipes" / "speech16k" / "ceiling.py"
spec = importlib.util.spec_from_file_location("ceiling", SCRIPT)
ceiling = importlib.util.module_from_spec(spec)
sys.modules["ceiling"] = ceiling
spec.loader.exec_module(ceiling)


def test_coded_rows_decode_as_the_codec_does_and_latents_skip_the_quantizer(fsdd_root, saved_model):
    model = Codec.from_pretrained(saved_model)
    wav = read_for(sorted(fsdd_root.glob("*.wav"))[0], model.sample_rate, model.channels)
    decoded = []  # what each row scored, in order: 1 level, all levels, latents

    def keep(estimate, reference):
        decoded.append(estimate)
        return {"mel": 0.0}

    (scored,) = ceiling.rows(model, [wav], [1, model.levels], keep)
    assert list(scored) == ["latents", "1 levels", f"{model.levels} levels"]
    windowing = Windowing.for_model(model)
    with torch.no_grad():
        for levels, row in zip((1, model.levels), decoded):
            (codes,) = encode_batch(model, [wav], levels, windowing)
            expected = decode_codes(model, codes, wav.shape[-1], windowing)
            torch.testing.assert_close(row, expected)
    unquantized = decoded[-1]
    assert unquantized.shape == expected.shape and (unquantized - expected).abs().max() > 1e-3


def test_scores_rank_an_identity_above_a_lowpass(fsdd_root):
    paths = sorted(fsdd_root.glob("*.wav"))[:3]
    quality = ceiling.scorer(8000)

    def scored(wav):
        lowpass = AF.lowpass_biquad(AF.lowpass_biquad(wav, 8000, 800), 8000, 800)
        return {"same": quality(wav, wav), "lowpass": quality(lowpass, wav)}

    problems = []
    wavs = ceiling.readable(paths, 8000, 1, problems)
    means, files = ceiling.mean_scores(scored(wav) for wav in wavs)
    assert files == 3 and not problems
    same, lowpass = means["same"], means["lowpass"]
    assert same["mel"] < 1e-6 and same["stoi"] > 0.999 and same["pesq"] > 4.4
    assert lowpass["mel"] > 0.1 and lowpass["stoi"] < 0.95 and lowpass["pesq"] < same["pesq"]


def test_a_bad_file_is_one_line_and_the_rest_still_counts(
    list_with_a_broken_file, saved_model, tmp_path, monkeypatch, capsys
):
    listing, broken = list_with_a_broken_file
    argv = ["ceiling.py", "-m", str(saved_model), "--files-from", str(listing)]
    monkeypatch.setattr(sys, "argv", [*argv, "--levels", "1"])
    with pytest.raises(SystemExit) as stop:
        ceiling.main()
    assert stop.value.code == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and str(broken) in err
    assert ": 1 files" in out and "latents | - |" in out and "1 levels |" in out
    monkeypatch.setattr(sys, "argv", [*argv, "--levels", "99"])
    with pytest.raises(SystemExit) as stop:
        ceiling.main()
    assert "--levels 99: the model has 1 to" in str(stop.value.code)
    monkeypatch.setattr(sys, "argv", [*argv[:4], str(tmp_path / "missing.txt")])
    with pytest.raises(SystemExit) as stop:
        ceiling.main()
    assert "missing.txt: cannot read the file list" in str(stop.value.code)
