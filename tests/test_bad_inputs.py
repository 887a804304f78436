"""The bad-input corpus (files a codec toolkit meets in the wild, made on the spot) through
every surface that reads audio: `codec encode`, `codec eval`, manifest building and training.
Each file is coded correctly or gets one line naming it and the problem; the others are
unaffected."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.audio import read_audio
from codec.cli import main
from codec.codes_file import read_codes
from codec.models import Codec
from codec.train.data import SegmentDataset, build_manifest

# name -> (what it is, expected outcome for encode/eval: "ok" or part of the error line)
CASES = {
    "empty.wav": ("0-byte file", "empty file"),
    "header_only.wav": ("WAV header, no samples", "no audio samples"),
    "truncated.wav": ("WAV cut in the middle of its data", "ok"),
    "cut.flac": ("FLAC cut in the middle", "could not decode audio"),
    "wrong_extension.flac": ("a WAV file named .flac", "ok"),
    "text.wav": ("a text file named .wav", "not a readable audio file"),
    "nan.wav": ("float WAV with NaN samples", "NaN or Inf"),
    "inf.wav": ("float WAV with Inf samples", "NaN or Inf"),
    "one_sample.wav": ("1 sample", "ok"),
    "rate8k.wav": ("real speech at 8 kHz", "ok"),
    "rate192k.wav": ("192 kHz audio", "ok"),
    "six_channels.wav": ("5.1 audio", "ok"),
    "header_lie.wav": ("header claims 2^31 samples, file holds 1000", "ok"),  # 1000 read
    "silence.wav": ("1 s of digital silence", "ok"),
    "clipping.wav": ("full-scale clipped square wave", "ok"),
}


def _wav_header(frames: int, rate: int = 16000, channels: int = 1) -> bytes:
    data = frames * 2 * channels
    return (
        b"RIFF"
        + struct.pack("<I", (36 + data) & 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
        + b"data"
        + struct.pack("<I", data & 0xFFFFFFFF)
    )


def make_corpus(folder: Path, speech: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    voice, rate = sf.read(speech, dtype="float32")
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "header_only.wav").write_bytes(_wav_header(0))
    sf.write(folder / "full.wav", tone, 16000, subtype="PCM_16")
    full = (folder / "full.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(full[: len(full) // 2])
    sf.write(folder / "full.flac", tone, 16000)
    flac = (folder / "full.flac").read_bytes()
    (folder / "cut.flac").write_bytes(flac[: len(flac) // 2])
    (folder / "full.wav").unlink()
    (folder / "full.flac").unlink()
    sf.write(folder / "wrong_extension.flac", tone, 16000, format="WAV", subtype="PCM_16")
    (folder / "text.wav").write_text("these are not the samples you are looking for\n" * 20)
    for name, bad in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        samples = tone.copy()
        samples[1234] = bad
        sf.write(folder / name, samples, 16000, subtype="FLOAT")
    sf.write(folder / "one_sample.wav", np.array([0.25], dtype=np.float32), 16000)
    sf.write(folder / "rate8k.wav", voice, rate)
    sf.write(folder / "rate192k.wav", np.repeat(tone[:4000], 12) * 0.5, 192000)
    sf.write(folder / "six_channels.wav", np.stack([tone] * 6, axis=1) / 6, 16000)
    lie = _wav_header(2**31 - 1) + (tone[:1000] * 32767).astype("<i2").tobytes()
    (folder / "header_lie.wav").write_bytes(lie)
    sf.write(folder / "silence.wav", np.zeros(16000, dtype=np.float32), 16000)
    square = np.sign(np.sin(2 * np.pi * 110 * t)).astype(np.float32)
    sf.write(folder / "clipping.wav", square, 16000, subtype="FLOAT")
    return {name: outcome for name, (_, outcome) in CASES.items()}


BAD = {name: outcome for name, (_, outcome) in CASES.items() if outcome != "ok"}
GOOD = [name for name in CASES if name not in BAD]
# only these fail before any sample is read, so only these leave the training manifest
HEADER_FAILURES = {"empty.wav", "header_only.wav", "text.wav"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, fsdd_root):
    folder = tmp_path_factory.mktemp("bad") / "in"
    make_corpus(folder, sorted(fsdd_root.glob("*.wav"))[0])
    return folder


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error: ")]


def test_encode_codes_every_good_file_and_names_every_bad_one(
    corpus, saved_model, tmp_path, capsys
):
    out = tmp_path / "codes"
    assert main(["encode", str(corpus), "-m", str(saved_model), "-o", str(out), "--quiet"]) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == len(BAD)
    for name, phrase in BAD.items():
        assert sum(name in line and phrase in line for line in lines) == 1, name
        assert not (out / name).with_suffix(".codes").exists()
    model = Codec.from_pretrained(saved_model)
    for name in GOOD:
        codes, header = read_codes(out / f"{name.rsplit('.', 1)[0]}.codes")
        audio = model.decode(codes[None], length=header.length)
        assert torch.isfinite(audio).all() and audio.shape[-1] == header.length, name
    _, header = read_codes(out / "header_lie.codes")
    assert header.length == 1000  # the samples that exist, not the 2^31 the header claimed
    _, header = read_codes(out / "six_channels.codes")
    assert header.extra["source_channels"] == 6


def test_eval_reports_every_bad_file_and_scores_the_rest(
    corpus, saved_model, tmp_path, capsys, csv_rows
):
    out = tmp_path / "report"
    args = ["eval", str(corpus), "-m", str(saved_model), "--bandwidths", "3", "-o", str(out)]
    assert main(args + ["--quiet", "--spectrograms", "0"]) == 1
    lines = error_lines(capsys.readouterr().err)
    for name, phrase in BAD.items():
        assert sum(name in line and phrase in line for line in lines) == 1, name
    rows = [r for r in csv_rows(out / "results.csv") if r["codec"] == "codec"]
    assert sorted(r["file"].rsplit("/", 1)[1] for r in rows) == sorted(GOOD)
    assert json.loads((out / "summary.json").read_text())["files_failed"] == len(BAD)


def test_manifest_and_segments_skip_bad_files_and_count_them(corpus, capsys):
    records, problems = build_manifest([corpus])
    assert sorted(p.split(":")[0].rsplit("/", 1)[1] for p in problems) == sorted(HEADER_FAILURES)
    data = SegmentDataset(records, 16000, 1, segment_seconds=0.05, seed=0)
    skipped = 0
    for index in range(len(data)):
        wav, failed = data[index]
        assert wav.shape == (1, 800) and torch.isfinite(wav).all()
        skipped += failed
    read_failures = set(BAD) - HEADER_FAILURES
    assert skipped == len(read_failures)  # each counted once
    err = capsys.readouterr().err
    for name in read_failures:
        assert sum(name in line for line in err.splitlines()) == 1, name


def test_training_on_the_bad_corpus_runs_and_logs_what_it_skipped(
    corpus, tmp_path, metrics_records, tiny_train_overrides
):
    from codec.train import main as train

    run = tmp_path / "run"
    overrides = [o for o in tiny_train_overrides if not o.startswith("data.")]
    train(
        overrides
        + [
            "data=folder",
            f"data.root={corpus}",
            "data.segment_seconds=0.05",
            "data.batch_size=4",
            "data.num_workers=0",
            "data.valid_fraction=0.2",
            "trainer.steps=6",
            "trainer.valid_every=6",
            "trainer.checkpoint_every=6",
            f"run_dir={run}",
        ]
    )
    logged = metrics_records(run)
    assert logged[0]["event"] == "start" and logged[0]["skipped_files"] == len(HEADER_FAILURES)
    assert any("valid_mel" in k for r in logged for k in r)
    final = Codec.from_pretrained(run / "model")
    assert all(torch.isfinite(p).all() for p in final.parameters())


def test_every_case_of_the_corpus_is_made(corpus):
    assert sorted(p.name for p in corpus.iterdir()) == sorted(CASES)
    wav, rate = read_audio(corpus / "rate192k.wav")
    assert rate == 192000 and wav.shape[0] == 1
