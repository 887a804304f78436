"""The `codec` command end to end: encode, decode, info, bad input, folders, overwrites."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from codec import __version__
from codec.cli import main
from codec.codes_file import read_codes


def test_version_and_help(capsys):
    try:
        main(["--version"])
    except SystemExit as exit_:
        assert exit_.code == 0
    assert __version__ in capsys.readouterr().out
    assert main([]) == 0
    assert "usage: codec" in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "codec.cli", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("encode", "decode", "info"):
        assert command in out.stdout


def speech(fsdd_root, folder, count=3):
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(fsdd_root.glob("*.wav"))[:count]
    return [shutil.copy(f, folder / f.name) for f in files]


def test_encode_decode_round_trip(fsdd_root, saved_model, tmp_path, capsys):
    (source,) = speech(fsdd_root, tmp_path / "in", 1)
    out = tmp_path / "a.codes"
    assert main(["encode", str(source), "-m", str(saved_model), "-o", str(out), "-b", "6"]) == 0
    codes, header = read_codes(out)
    info = sf.info(str(source))
    assert header.levels == 2 and header.extra["source_sample_rate"] == 8000
    assert header.length == info.frames * 2 and codes.shape == (2, 2, header.frames)
    wav_out = tmp_path / "a.wav"
    assert main(["decode", str(out), "-m", str(saved_model), "-o", str(wav_out)]) == 0
    assert (
        sf.info(str(wav_out)).samplerate == 16000 and sf.info(str(wav_out)).frames == header.length
    )
    assert (
        main(
            [
                "decode",
                str(out),
                "-m",
                str(saved_model),
                "-o",
                str(tmp_path / "b.flac"),
                "--sr",
                "8000",
                "--format",
                "flac",
            ]
        )
        == 0
    )
    assert sf.info(str(tmp_path / "b.flac")).frames == info.frames
    assert main(["info", str(out)]) == 0 and main(["info", str(saved_model)]) == 0
    text = capsys.readouterr().out
    assert "6 kbps" in text and "bandwidths (kbps): 3, 6, 9, 12" in text


def test_bad_inputs_get_one_line_each_and_the_rest_still_encode(
    fsdd_root, saved_model, tmp_path, capsys
):
    folder = tmp_path / "in"
    good = speech(fsdd_root, folder, 2)
    (folder / "text.wav").write_text("this is not audio")
    (folder / "empty.wav").write_bytes(b"")
    sf.write(folder / "nan.wav", np.full(800, np.nan, dtype=np.float32), 8000, subtype="FLOAT")
    sf.write(folder / "zero.wav", np.zeros(0, dtype=np.float32), 8000)
    sf.write(folder / "slow.wav", np.zeros(800, dtype=np.float32), 500)
    header_only = folder / "header.wav"
    header_only.write_bytes((folder / good[0].name).read_bytes()[:44])
    out = tmp_path / "out"
    code = main(
        [
            "encode",
            str(folder),
            str(tmp_path / "missing.wav"),
            "-m",
            str(saved_model),
            "-o",
            str(out),
            "--batch-size",
            "3",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    problems = [line for line in err.splitlines() if line.startswith("error: ")]
    for name in (
        "text.wav",
        "empty.wav",
        "nan.wav",
        "zero.wav",
        "slow.wav",
        "header.wav",
        "missing.wav",
    ):
        assert sum(name in line for line in problems) == 1, (name, problems)
    assert "encoded 2 of 9 file(s)" in err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.with_suffix(".codes").name for p in good
    )


def test_folders_are_mirrored_and_outputs_never_overwritten(
    fsdd_root, saved_model, tmp_path, capsys
):
    speech(fsdd_root, tmp_path / "in" / "sub", 2)
    out = tmp_path / "out"
    args = ["encode", str(tmp_path / "in"), "-m", str(saved_model), "-o", str(out), "-r", "-q", "1"]
    assert main(args) == 0
    written = sorted(out.rglob("*.codes"))
    assert len(written) == 2 and all(p.parent == out / "sub" for p in written)
    before = written[0].read_bytes()
    assert main(args[:-2] + ["-q", "4"]) == 1
    assert "exists (use --force" in capsys.readouterr().err
    assert written[0].read_bytes() == before
    assert main(args[:-2] + ["-q", "4", "--force"]) == 0
    assert read_codes(written[0])[1].levels == 4
    assert not list(out.rglob("*.tmp"))


def test_decode_refuses_codes_from_another_model(
    fsdd_root, saved_model, tmp_path, capsys, monkeypatch, tiny_codec
):
    (source,) = speech(fsdd_root, tmp_path / "in", 1)
    codes_path = tmp_path / "a.codes"
    main(["encode", str(source), "-m", str(saved_model), "-o", str(codes_path)])
    other = tiny_codec(model_id="other").save_pretrained(tmp_path / "other")
    damaged = tmp_path / "cut.codes"
    damaged.write_bytes(codes_path.read_bytes()[:-7])
    code = main(
        ["decode", str(codes_path), str(damaged), "-m", str(other), "-o", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "'tiny'" in err and "'other'" in err and "cut.codes" in err
    monkeypatch.delenv("CODEC_MODEL", raising=False)
    assert main(["decode", str(codes_path)]) == 1  # no shipped or imported model "tiny"
    assert "made by model tiny" in capsys.readouterr().err
    assert main(["encode", str(source), "-m", str(tmp_path / "nothing")]) == 1
    assert "not a saved model" in capsys.readouterr().err


def test_codes_files_are_byte_identical_across_runs_and_batch_sizes(
    fsdd_root, saved_model, tmp_path
):
    speech = tmp_path / "speech"
    speech.mkdir()
    for src in sorted(fsdd_root.glob("*_theo_*.wav"))[:6]:
        shutil.copy(src, speech / src.name)
    outputs = []
    for run, batch in enumerate([1, 4, 4]):
        out = tmp_path / f"codes{run}"
        args = ["encode", str(speech), "-m", str(saved_model), "-o", str(out), "--quiet"]
        assert main(args + ["--batch-size", str(batch)]) == 0
        outputs.append({p.name: p.read_bytes() for p in sorted(out.glob("*.codes"))})
    assert len(outputs[0]) == 6
    assert outputs[0] == outputs[1] == outputs[2]


def test_a_real_write_failure_is_one_line_and_the_other_files_still_decode(
    fsdd_root, saved_model, tmp_path, file_size_limit
):
    """Fault injection without mocks: a file-size limit (RLIMIT_FSIZE) between the sizes of
    two outputs fails the larger one with the OS's reason, in one line, and leaves no temp file
    behind."""
    (short,) = speech(fsdd_root, tmp_path / "in", 1)
    wav, rate = sf.read(str(short))
    sf.write(str(tmp_path / "in" / "long.wav"), np.tile(wav, 4), rate)
    codes = tmp_path / "codes"
    assert main(["encode", str(tmp_path / "in"), "-m", str(saved_model), "-o", str(codes)]) == 0
    probe = tmp_path / "probe"
    assert main(["decode", str(codes), "-m", str(saved_model), "-o", str(probe)]) == 0
    sizes = sorted((p.stat().st_size, p.name) for p in probe.glob("*.wav"))
    assert sizes[0][1] == short.name and sizes[1][1] == "long.wav"
    limit = (sizes[0][0] + sizes[1][0]) // 2
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "codec.cli", "decode", str(codes), "-m", str(saved_model)]
    done = subprocess.run(
        [*cmd, "-o", str(out), "--quiet"],
        preexec_fn=file_size_limit(limit),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: {out / 'long.wav'}: could not write (File too large)",
        "decoded 1 of 2 file(s); 1 problem(s)",
    ]
    assert sorted(p.name for p in out.iterdir()) == [short.name]  # no temp file left
    assert (out / short.name).read_bytes() == (probe / short.name).read_bytes()


@pytest.mark.parametrize(
    "option, message",
    [
        (["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
        (["--chunk-seconds", "-1"], "--chunk-seconds: must be a positive number, got -1"),
        (["-b", "nan"], "--bandwidth: must be a positive number, got nan"),
        (["-q", "0"], "--levels: must be at least 1, got 0"),
    ],
)
def test_bad_option_values_are_usage_errors(saved_model, tmp_path, capsys, option, message):
    wav = tmp_path / "a.wav"
    sf.write(str(wav), np.zeros(1600, dtype=np.float32), 16000)
    with pytest.raises(SystemExit) as stop:
        main(["encode", str(wav), "-m", str(saved_model), "-o", str(tmp_path / "a.codes"), *option])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["decode", str(tmp_path / "x.codes"), "-m", str(saved_model), "--sr", "7"])
    assert "--sr: must be 1000 to 384000 Hz, got 7" in capsys.readouterr().err


def test_a_device_this_machine_lacks_is_one_usage_line(saved_model, tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(str(wav), np.zeros(1600, dtype=np.float32), 16000)
    args = ["encode", str(wav), "-m", str(saved_model), "-o", str(tmp_path / "a.codes")]
    assert main([*args, "--device", "no-such-device"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("codec encode: --device no-such-device: not usable here (")
    assert not (tmp_path / "a.codes").exists()


def test_ctrl_c_is_one_line_exit_130_and_leaves_only_whole_outputs(
    fsdd_root, saved_model, tmp_path, capsys, monkeypatch
):
    import codec.coding

    speech(fsdd_root, tmp_path / "in", 3)
    real, calls = codec.coding.encode_each, {"n": 0}

    def interrupted_on_second_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(codec.coding, "encode_each", interrupted_on_second_batch)
    out = tmp_path / "out"
    args = ["encode", str(tmp_path / "in"), "-m", str(saved_model), "-o", str(out)]
    assert main([*args, "--batch-size", "2", "--quiet"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "codec encode: interrupted; no partial outputs left"
    ]
    written = sorted(out.iterdir())
    assert len(written) == 2 and all(read_codes(p) for p in written)  # the first batch, whole


def test_pipes_link_loops_and_an_output_that_is_the_input_are_refused(
    fsdd_root, saved_model, tmp_path, capsys
):
    import os

    (source,) = speech(fsdd_root, tmp_path, 1)
    before = source.read_bytes()
    os.mkfifo(tmp_path / "pipe.wav")  # reading it would block forever
    os.symlink(tmp_path / "b.wav", tmp_path / "a.wav")
    os.symlink(tmp_path / "a.wav", tmp_path / "b.wav")
    inputs = [str(tmp_path / n) for n in ("pipe.wav", "a.wav")]
    assert main(["encode", *inputs, "-m", str(saved_model), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'pipe.wav'}: not a regular file" in err
    assert f"error: {tmp_path / 'a.wav'}: too many levels of symbolic links" in err
    args = ["encode", str(source), "-m", str(saved_model), "-o", str(source), "--force"]
    assert main(args) == 1
    assert "is an input; choose another -o" in capsys.readouterr().err
    assert source.read_bytes() == before


def test_bfloat16_is_refused_where_the_cpu_would_emulate_it(
    saved_model, fsdd_root, tmp_path, capsys, monkeypatch
):
    """On a CPU without native bf16 (AVX2 only) bf16 runs 10x+ slower than fp32: the CLI says
    so in one usage line; the Python API runs fp32 instead, with a warning."""
    import torch

    import codec.models.codec as codec_module
    import codec.nn
    from codec.models import Codec

    wav = sorted(fsdd_root.glob("*.wav"))[0]
    monkeypatch.setattr(codec.nn, "native_bf16", lambda: False)
    monkeypatch.setattr(codec_module, "native_bf16", lambda: False)
    args = ["encode", str(wav), "-m", str(saved_model), "-o", str(tmp_path / "a.codes")]
    assert main([*args, "--precision", "bfloat16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no native bf16" in err[0]
    assert not (tmp_path / "a.codes").exists()
    model = Codec.from_pretrained(saved_model)
    audio = torch.randn(1, 1, 4000) * 0.1
    expected = model.encode(audio)
    model.precision = "bfloat16"
    with pytest.warns(UserWarning, match="emulated"):
        assert torch.equal(model.encode(audio), expected)
