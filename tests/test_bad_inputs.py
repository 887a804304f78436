"""The bad-input corpus (tests/badinputs.py) through every surface that reads audio: `codec
encode`, `codec eval`, manifest building and training. Each file is coded correctly or gets one
line naming it and the problem; the others are unaffected."""

import json

import pytest
import torch
from badinputs import CASES, make_corpus
from conftest import csv_rows

from codec.audio import read_audio
from codec.cli import main
from codec.codes_file import read_codes
from codec.models import Codec
from codec.train.data import SegmentDataset, build_manifest

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


def test_eval_reports_every_bad_file_and_scores_the_rest(corpus, saved_model, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["eval", str(corpus), "-m", str(saved_model), "--bandwidths", "3", "-o", str(out)]
    assert main(args + ["--quiet", "--spectrograms", "0"]) == 1
    lines = error_lines(capsys.readouterr().err)
    for name, phrase in BAD.items():
        assert sum(name in line and phrase in line for line in lines) == 1, name
    rows = csv_rows(out / "results.csv")
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


def test_training_on_the_bad_corpus_runs_and_logs_what_it_skipped(corpus, tmp_path):
    from test_train import TINY, records

    from codec.train import main as train

    run = tmp_path / "run"
    overrides = [o for o in TINY if not o.startswith("data.")]
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
    logged = records(run)
    assert logged[0]["event"] == "start" and logged[0]["skipped_files"] == len(HEADER_FAILURES)
    assert any("valid_mel" in k for r in logged for k in r)
    final = Codec.from_pretrained(run / "model")
    assert all(torch.isfinite(p).all() for p in final.parameters())


def test_every_case_of_the_corpus_is_made(corpus):
    assert sorted(p.name for p in corpus.iterdir()) == sorted(CASES)
    wav, rate = read_audio(corpus / "rate192k.wav")
    assert rate == 192000 and wav.shape[0] == 1
