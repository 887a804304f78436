"""Training end to end on tiny settings: export, resume, non-finite steps, safe checkpoints,
kill -9 and restart."""

import importlib.util
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from codec.models import Codec
from codec.train import held_out_paths, main
from codec.train.checkpoint import CheckpointError, list_checkpoints, load_checkpoint


def test_train_exports_a_model_and_resumes(tmp_path, metrics_records, tiny_train_overrides):
    run = tmp_path / "run"
    steps = ["trainer.steps=4", "trainer.valid_every=2", "trainer.checkpoint_every=2"]
    main([*tiny_train_overrides, *steps, f"run_dir={run}"])
    model = Codec.from_pretrained(run / "model")
    assert model.levels == 3 and (run / "config.yaml").exists()
    logged = metrics_records(run)
    lowest = f"valid_mel@{model.bitrate(1) / 1000:g}kbps"
    assert any(r.get("event") == "valid" and lowest in r for r in logged)
    assert any("quantizer" in r and "audio_seconds_per_second" in r for r in logged)
    assert [p.name for p in list_checkpoints(run)][-1] == "step_00000004.ckpt"
    assert list_checkpoints(run / "best")
    listed = (run / "heldout.txt").read_text().split()  # the files it never trained on
    assert listed and all(Path(p).is_file() for p in listed)
    (run / "heldout.txt").rename(run / "heldout.moved")  # an older run: the split is rebuilt
    assert [str(p) for p in held_out_paths(run)] == listed
    (run / "heldout.moved").rename(run / "heldout.txt")
    if importlib.util.find_spec("tensorboard") is not None:  # installed by `make test`
        assert list((run / "tb").glob("events.out.tfevents.*"))

    main(
        [
            *tiny_train_overrides,
            "trainer.steps=6",
            "trainer.valid_every=2",
            "trainer.checkpoint_every=2",
            f"run_dir={run}",
        ]
    )
    state = load_checkpoint(list_checkpoints(run)[-1])
    assert state["step"] == 6
    steps_logged = [r["step"] for r in metrics_records(run) if "mel" in r]
    assert steps_logged == sorted(set(steps_logged))  # resumed at 4, no step trained twice


def test_non_finite_steps_are_skipped_then_the_last_checkpoint_restored(
    tmp_path, monkeypatch, metrics_records, tiny_train_overrides
):
    from codec import losses

    run = tmp_path / "run"
    main(
        [
            *tiny_train_overrides,
            "trainer.steps=2",
            "trainer.checkpoint_every=2",
            "trainer.valid_every=100",
            f"run_dir={run}",
        ]
    )
    calls = {"n": 0}
    original = losses.MelLoss.forward

    def sometimes_nan(self, estimate, target):
        calls["n"] += 1
        value = original(self, estimate, target)
        return value * float("nan") if calls["n"] <= 3 else value

    monkeypatch.setattr(losses.MelLoss, "forward", sometimes_nan)
    main(
        [
            *tiny_train_overrides,
            "trainer.steps=4",
            "trainer.max_bad_steps=3",
            "trainer.checkpoint_every=2",
            "trainer.valid_every=100",
            f"run_dir={run}",
        ]
    )
    logged = metrics_records(run)
    assert sum(r.get("event") == "skipped_step" for r in logged) == 3
    assert load_checkpoint(list_checkpoints(run)[-1])["step"] == 4
    for key, value in load_checkpoint(list_checkpoints(run)[-1])["model"].items():
        assert torch.isfinite(value.float()).all(), key


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "step_00000001.ckpt"
    with open(path, "wb") as handle:
        pickle.dump({"step": 1, "payload": Exploit()}, handle)
    with pytest.raises(CheckpointError, match="never unpickled"):
        load_checkpoint(path)


@pytest.mark.parametrize("delay", [0.0, 0.4, 1.1])
def test_kill_9_then_the_same_command_resumes(
    tmp_path, delay, metrics_records, tiny_train_overrides
):
    """Killed at several points after the first checkpoint (mid-step, mid-write, ...): the newest
    checkpoint loads, at most one checkpoint interval is lost, and the run finishes."""
    run = tmp_path / "run"
    args = [
        *tiny_train_overrides,
        "trainer.steps=40",
        "trainer.checkpoint_every=5",
        "trainer.valid_every=1000",
        "trainer.log_every=1",
        f"run_dir={run}",
    ]
    cmd = [sys.executable, "-m", "codec.train", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list_checkpoints(run):
        time.sleep(0.2)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list_checkpoints(run), "no checkpoint before the kill"
    killed_at = load_checkpoint(list_checkpoints(run)[-1])["step"]
    assert killed_at < 40
    trained = max(r["step"] for r in metrics_records(run))
    assert trained - killed_at <= 5  # checkpoint_every: the most a kill can cost
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert load_checkpoint(list_checkpoints(run)[-1])["step"] == 40
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))


@pytest.mark.slow
def test_compiled_training_matches_the_eager_checkpoint_format(tmp_path, tiny_train_overrides):
    steps = ["trainer.steps=2", "trainer.valid_every=100", "trainer.checkpoint_every=2"]
    main([*tiny_train_overrides, *steps, "trainer.compile=true", f"run_dir={tmp_path / 'run'}"])
    state = load_checkpoint(list_checkpoints(tmp_path / "run")[-1])
    assert state["step"] == 2 and not any("_orig_mod" in k for k in state["model"])
    Codec.from_pretrained(tmp_path / "run" / "model")


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(
    tmp_path, metrics_records, tiny_train_overrides
):
    run = tmp_path / "run"
    args = [
        *tiny_train_overrides,
        "trainer.steps=400",
        "trainer.checkpoint_every=1000",
        "trainer.log_every=1",
    ]
    cmd = [sys.executable, "-m", "codec.train", *args, "trainer.valid_every=1000", f"run_dir={run}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run / "metrics.jsonl").exists() and len(metrics_records(run)) >= 4:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in err
    state = load_checkpoint(list_checkpoints(run)[-1])
    assert 3 <= state["step"] < 400  # no checkpoint was due: this one came from the signal
    assert any(r.get("event") == "stopped" for r in metrics_records(run))
    Codec.from_pretrained(run / "model")


def test_sigterm_to_the_process_group_stops_with_a_checkpoint_despite_loader_workers(
    tmp_path, metrics_records, tiny_train_overrides
):
    """As Ctrl-C or `kill -- -PGID`: the data workers get the signal too and must leave the
    stop to the trainer."""
    run = tmp_path / "run"
    args = [*tiny_train_overrides, "trainer.steps=400", "trainer.checkpoint_every=1000"]
    cmd = [sys.executable, "-m", "codec.train", *args, "data.num_workers=1", f"run_dir={run}"]
    cmd += ["trainer.log_every=1", "trainer.valid_every=1000"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run / "metrics.jsonl").exists() and len(metrics_records(run)) >= 4:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert 3 <= load_checkpoint(list_checkpoints(run)[-1])["step"] < 400


def test_a_full_disk_ends_the_run_with_one_line_and_the_last_checkpoint_intact(
    tmp_path, monkeypatch, tiny_train_overrides
):
    import errno

    from codec.train import checkpoint

    run = tmp_path / "run"
    real_save, calls = torch.save, {"n": 0}

    def full_after_first(obj, handle, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            handle.write(b"partial")  # the disk fills half-way through
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", full_after_first)
    steps = ["trainer.steps=4", "trainer.checkpoint_every=2", "trainer.valid_every=1000"]
    with pytest.raises(SystemExit) as stop:
        main([*tiny_train_overrides, *steps, f"run_dir={run}"])
    message = str(stop.value)
    assert "step 4 checkpoint" in message and "No space left on device" in message
    assert "step_00000002.ckpt is intact" in message
    assert [p.name for p in list_checkpoints(run)] == ["step_00000002.ckpt"]
    assert load_checkpoint(list_checkpoints(run)[0])["step"] == 2
    assert not list(run.glob(".*.tmp"))


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file-size limits")
def test_a_real_write_failure_ends_the_run_with_the_os_reason(
    tmp_path, file_size_limit, tiny_train_overrides
):
    """Fault injection without mocks: a 200 kB file-size limit (RLIMIT_FSIZE) lets the run
    write its corpus and logs but not a checkpoint (~700 kB)."""
    run = tmp_path / "run"
    steps = ["trainer.steps=4", "trainer.checkpoint_every=2", "trainer.valid_every=1000"]
    cmd = [sys.executable, "-m", "codec.train", *tiny_train_overrides, *steps, f"run_dir={run}"]
    done = subprocess.run(cmd, preexec_fn=file_size_limit(200_000), capture_output=True, text=True)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"codec train: could not write the step 2 checkpoint in {run} (File too large); "
        "no earlier checkpoint exists"
    ]
    assert not list_checkpoints(run) and not list(run.rglob("*.tmp"))


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.valid_every=0", "trainer.valid_every must be a whole number >= 1, got 0"),
        ("trainer.checkpoint_every=1.5", "trainer.checkpoint_every must be a whole number"),
        ("trainer.steps=-5", "trainer.steps must be a whole number >= 0, got -5"),
    ],
)
def test_bad_step_counts_are_one_line_before_anything_runs(
    tmp_path, override, message, tiny_train_overrides
):
    with pytest.raises(SystemExit) as stop:
        main([*tiny_train_overrides, override, f"run_dir={tmp_path / 'run'}"])
    assert message in str(stop.value) and not (tmp_path / "run").exists()


def test_every_reconstruction_term_trains_through_the_balancer(
    tmp_path, metrics_records, tiny_train_overrides
):
    run = tmp_path / "run"
    terms = [f"loss.weights.{name}=1" for name in ("mel_level", "stft", "sisdr", "stoi")]
    main(
        [
            *tiny_train_overrides,
            *terms,
            "data.segment_seconds=0.5",  # STOI scores runs of 384 ms
            "trainer.steps=2",
            "trainer.valid_every=100",
            f"run_dir={run}",
        ]
    )
    logged = [r for r in metrics_records(run) if "mel" in r]
    for name in ("mel", "mel_level", "l1", "stft", "sisdr", "stoi"):
        assert all(math.isfinite(r[name]) for r in logged) and logged[0][f"grad_{name}"] > 0
    assert -1 <= logged[0]["stoi"] < 0


def test_learning_rate_warms_up_then_decays_to_the_floor():
    from codec.train.optim import lr_factor

    cosine = [lr_factor(s, 10, 110, "cosine", 0.1) for s in (0, 9, 10, 60, 110, 500)]
    assert cosine[0] == pytest.approx(0.1) and cosine[1] == cosine[2] == pytest.approx(1.0)
    assert cosine[3] == pytest.approx(0.55) and cosine[4] == cosine[5] == pytest.approx(0.1)
    assert lr_factor(10_000, 10, 110, "constant", 0.1) == 1.0
    with pytest.raises(ValueError, match="optim.decay"):
        lr_factor(50, 10, 110, "linear", 0.1)


def test_a_dead_code_threshold_above_the_mean_code_count_is_named():
    from codec.quantize import GroupedResidualVQ
    from codec.train.solver import dead_code_churn

    def quantizer(threshold):
        return GroupedResidualVQ(
            dim=16,
            groups=2,
            num_quantizers=2,
            codebook_size=1024,
            threshold_ema_dead_code=threshold,
        )

    # 8 x 0.5 s at 50 frames/s: 200 vectors for 1024 codes, 0.195 per code per step
    warning = dead_code_churn(quantizer(2.0), 200)
    assert "threshold_ema_dead_code=2" in warning and "0.195" in warning and "1024 codes" in warning
    assert dead_code_churn(quantizer(0.02), 200) is None
    assert dead_code_churn(quantizer(2.0), 64 * 75) is None  # EnCodec's 64 x 1 s at 75 frames/s
    assert dead_code_churn(quantizer(0.0), 200) is None


EXPERIMENTS = Path(__file__).parents[2] / "configs" / "experiment"


@pytest.mark.parametrize("experiment", sorted(p.stem for p in EXPERIMENTS.glob("*.yaml")))
def test_every_shipped_experiment_composes_into_a_model_the_config_check_accepts(experiment):
    """An experiment that swaps a part must not carry the old part's settings into the new one
    (the check refuses a SEANet `lstm` in an inverse-STFT decoder)."""
    from omegaconf import OmegaConf

    from codec.models import CodecConfig
    from codec.train.config import check_trainer_config, compose_config

    cfg = compose_config([f"experiment={experiment}"])
    check_trainer_config(cfg)
    config = CodecConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))
    assert config.sample_rate in (16000, 24000, 44100)
