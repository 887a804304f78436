"""Training: `codec train [hydra overrides]` or `python -m codec.train [overrides]`.

One run lives in `run_dir`: the resolved config (config.yaml), its held-out files (heldout.txt),
checkpoints (step_*.ckpt, best.ckpt), metrics (metrics.jsonl) and the exported model (model/,
the save_pretrained format that `codec encode` reads). Starting a run whose run_dir holds
checkpoints resumes from the newest; `init_from=MODEL_DIR` fine-tunes from a saved model. Under
torchrun the same command trains with
DDP: every rank reads its share of the data, rank 0 logs and writes.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from codec.audio import AudioError, read_for
from codec.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    remove_stale_temps,
    save_checkpoint,
)
from codec.fileio import atomic_write_bytes
from codec.losses import (
    Balancer,
    MelLoss,
    MultiResolutionSTFTLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
    waveform_l1,
)
from codec.metrics import si_sdr
from codec.model import Codec, CodecConfig

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


class NonFiniteStep(Exception):
    pass


class TensorBoard:
    """Scalars, audio samples and spectrogram images for TensorBoard, when it is installed."""

    def __init__(self, writer):
        self.writer = writer

    @classmethod
    def open(cls, folder: Path) -> TensorBoard | None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return cls(SummaryWriter(str(folder)))

    def scalars(self, step: int, record: dict) -> None:
        for key, value in record.items():
            if isinstance(value, (int, float)) and key not in ("step", "time"):
                self.writer.add_scalar(key.replace("@", "/"), value, step)
            elif key == "quantizer":
                for name, values in value.items():
                    for level, v in enumerate(values):
                        self.writer.add_scalar(f"quantizer_{name}/{level}", v, step)
        self.writer.flush()

    def examples(self, step: int, name: str, reference, decoded: dict, rate: int) -> None:
        from codec.report import spectrogram_plot

        self.writer.add_audio(f"{name}/original", reference.mean(0).clamp(-1, 1), step, rate)
        for (_, kbps), wav in decoded.items():
            self.writer.add_audio(f"{name}/{kbps:g}kbps", wav.mean(0).clamp(-1, 1), step, rate)
        figure = spectrogram_plot(reference, decoded, rate)
        self.writer.add_figure(f"{name}/spectrograms", figure, step)


def setup_distributed() -> tuple[int, int]:
    """(rank, world size), starting the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def build_model(cfg: DictConfig) -> Codec:
    fields = OmegaConf.to_container(cfg.model, resolve=True)
    model = Codec(CodecConfig.from_dict(fields))
    if cfg.init_from:
        source = Codec.from_pretrained(cfg.init_from, inference=False)
        model.load_state_dict(source.state_dict())
    return model


def build_discriminator(cfg: DictConfig, channels: int):
    names = list(cfg.discriminator.names)
    if not names:
        return None
    from codec.nn.discriminators import make_discriminators

    return make_discriminators(names, channels, filters=cfg.discriminator.filters)


def build_data(cfg: DictConfig, model: Codec, run_dir: Path, rank: int, world: int):
    """(training DataLoader, validation records, number of files skipped as unreadable)."""
    from codec.data import SegmentDataset, build_manifest, make_demo_corpus, split_manifest

    data = cfg.data
    roots = data_roots(cfg, run_dir)
    if data.kind == "demo":
        root = roots[0]
        if rank == 0 and not root.is_dir():
            make_demo_corpus(
                root,
                count=data.count,
                seconds=data.seconds,
                sample_rate=model.sample_rate,
                seed=cfg.seed,
            )
        if world > 1:
            dist.barrier()
    records, problems = build_manifest(roots)
    if not records:
        raise SystemExit(f"codec train: no readable audio in {', '.join(map(str, roots))}")
    train, valid = split_manifest(records, data.valid_fraction, seed=cfg.seed)
    dataset = SegmentDataset(
        train,
        model.sample_rate,
        model.channels,
        data.segment_seconds,
        loudness_lufs=model.config.loudness_lufs,
        short=data.short,
        seed=cfg.seed,
    )
    sampler = None
    if world > 1:
        sampler = torch.utils.data.DistributedSampler(
            dataset, world, rank, shuffle=True, seed=cfg.seed, drop_last=True
        )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=data.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=data.num_workers,
        drop_last=True,
        generator=torch.Generator().manual_seed(cfg.seed),
        persistent_workers=data.num_workers > 0,
    )
    return loader, valid, problems


def data_roots(cfg: DictConfig, run_dir: Path) -> list[Path]:
    """The folders a run trains on (the demo corpus lives in the run folder by default)."""
    root = cfg.data.root
    if cfg.data.kind == "demo":
        return [Path(root) if root else Path(run_dir) / "corpus"]
    return [Path(r) for r in ([root] if isinstance(root, str) else root)]


HELD_OUT_FILE = "heldout.txt"


def held_out_paths(run_dir) -> list[Path]:
    """The files a run validates on and never trains on: the list it wrote when it started
    (run_dir/heldout.txt), or for runs older than that list, the split rebuilt from its saved
    config (the same while the data folders have not changed)."""
    from codec.data import build_manifest, split_manifest

    run_dir = Path(run_dir)
    listed = run_dir / HELD_OUT_FILE
    if listed.is_file():
        return [Path(line) for line in listed.read_text().splitlines() if line]
    if not (run_dir / "config.yaml").is_file():
        raise ValueError(f"{run_dir}: not a training run (no {HELD_OUT_FILE} or config.yaml)")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    records, _ = build_manifest(data_roots(cfg, run_dir))
    return [
        Path(r.path) for r in split_manifest(records, cfg.data.valid_fraction, seed=cfg.seed)[1]
    ]


def lr_factor(step: int, warmup: int, total: int, decay: str, floor: float) -> float:
    """The learning rate at `step` as a fraction of optim.lr: a linear warmup, then constant or
    a cosine from 1 down to `floor` at `total` steps (and `floor` after)."""
    if decay not in ("constant", "cosine"):  # checked first: LambdaLR calls this at step 0
        raise ValueError(f"optim.decay must be constant or cosine, not {decay!r}")
    if step < warmup:
        return (step + 1) / warmup
    if decay == "constant":
        return 1.0
    done = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * done))


def check_trainer_config(cfg: DictConfig) -> None:
    """The step counts and intervals, checked before anything is built."""
    trainer = cfg.trainer
    for key in ("log_every", "valid_every", "checkpoint_every"):
        if not isinstance(trainer[key], int) or trainer[key] < 1:
            raise ValueError(f"trainer.{key} must be a whole number >= 1, got {trainer[key]}")
    if not isinstance(trainer.steps, int) or trainer.steps < 0:
        raise ValueError(f"trainer.steps must be a whole number >= 0, got {trainer.steps}")


class Trainer:
    def __init__(self, cfg: DictConfig):
        check_trainer_config(cfg)
        self.cfg = cfg
        self.rank, self.world = setup_distributed()
        self.main = self.rank == 0
        self.run_dir = Path(cfg.run_dir)
        self.device = torch.device(cfg.trainer.device)
        if cfg.trainer.threads:
            torch.set_num_threads(cfg.trainer.threads)
        torch.manual_seed(cfg.seed + self.rank)
        random.seed(cfg.seed + self.rank)

        self.model = build_model(cfg).to(self.device)
        self.ema = copy.deepcopy(self.model).eval() if cfg.optim.ema_decay else None
        self.disc = build_discriminator(cfg, self.model.channels)
        if self.disc is not None:
            self.disc.to(self.device)
        self.loader, self.valid_records, problems = build_data(
            cfg, self.model, self.run_dir, self.rank, self.world
        )
        self.skipped_files = problems
        self.skipped_reads = 0  # files that failed while reading segments (after the manifest)
        self.mel = MelLoss(self.model.sample_rate, tuple(cfg.loss.mel_n_ffts), cfg.loss.n_mels)
        self.mel.to(self.device)
        self.stft = MultiResolutionSTFTLoss().to(self.device)
        weights = dict(cfg.loss.weights)
        if self.disc is None:
            weights = {k: v for k, v in weights.items() if k not in ("adv", "feat")}
        self.weights = {k: float(v) for k, v in weights.items() if v}
        self.balancer = (
            Balancer(self.weights, cfg.loss.balancer_decay) if cfg.loss.balancer else None
        )

        if cfg.trainer.compile:
            # in place, so state_dict keys do not change; the quantizer stays eager (fp32, its
            # collectives and its host-side dropout draws). Static shapes: training segments
            # are fixed, and a dynamic-shape compile of these models ran over 20 minutes on a
            # 2-core CPU (sympy in inductor's code generation) where a static one took 134 s.
            for module in (self.model.encoder, self.model.decoder, self.disc):
                if module is not None:
                    module.compile(dynamic=False)
        self.g_model = self.model
        self.d_model = self.disc
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
            if self.disc is not None:
                self.d_model = torch.nn.parallel.DistributedDataParallel(self.disc, device_ids=ids)
        self.opt_g = self._optimizer(self.model.parameters())
        self.opt_d = self._optimizer(self.disc.parameters()) if self.disc is not None else None
        self.sched_g = self._schedule(self.opt_g)
        self.sched_d = self._schedule(self.opt_d) if self.opt_d is not None else None
        self.step, self.best, self.bad_steps = 0, math.inf, 0
        self.epoch = 0
        wants_board = self.main and cfg.trainer.tensorboard
        self.board = TensorBoard.open(self.run_dir / "tb") if wants_board else None
        if wants_board and self.board is None:
            print("note: TensorBoard logging is off (pip install tensorboard)", file=sys.stderr)

    # -- setup helpers -------------------------------------------------------------------------

    def _optimizer(self, params):
        o = self.cfg.optim
        cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        return cls(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)

    def _schedule(self, optimizer):
        o = self.cfg.optim
        factor = functools.partial(
            lr_factor,
            warmup=int(o.warmup_steps),
            total=int(self.cfg.trainer.steps),
            decay=o.decay,
            floor=float(o.min_lr_ratio),
        )
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def _autocast(self):
        enabled = self.cfg.trainer.precision == "bfloat16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    # -- checkpoints ---------------------------------------------------------------------------

    def state(self) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "best": self.best,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "disc": self.disc.state_dict() if self.disc is not None else {},
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else {},
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict() if self.sched_d is not None else {},
            "balancer": self.balancer.state_dict() if self.balancer is not None else {},
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
            "config": OmegaConf.to_container(self.cfg, resolve=True),
        }

    def load_state(self, state: dict) -> None:
        self.step, self.epoch, self.best = state["step"], state["epoch"], state["best"]
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state["ema"]:
            self.ema.load_state_dict(state["ema"])
        if self.disc is not None and state["disc"]:
            self.disc.load_state_dict(state["disc"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        if self.opt_d is not None and state["opt_d"]:
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])
        if self.balancer is not None and state["balancer"]:
            self.balancer.load_state_dict(state["balancer"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(_as_tuple(state["rng"]["python"]))

    def save(self, folder: Path | None = None, keep_last: int | None = None) -> None:
        """Write a checkpoint (rank 0). A failed write (disk full, ...) ends the run with one
        line; the previous checkpoint is intact because writes are atomic."""
        if not self.main:
            return
        folder = folder or self.run_dir
        keep = self.cfg.trainer.keep_last if keep_last is None else keep_last
        with self._fatal_on_write_error(f"the step {self.step} checkpoint in {folder}"):
            save_checkpoint(folder, self.step, self.state(), keep)

    def export(self) -> Path:
        """The weight-EMA generator (or the raw one) as a model folder `codec encode` reads."""
        target = self.run_dir / "model"
        with self._fatal_on_write_error(f"the model {target}"):
            return (self.ema or self.model).save_pretrained(target)

    @contextlib.contextmanager
    def _fatal_on_write_error(self, what: str):
        try:
            yield
        except OSError as err:  # checkpoints and models are written so that a failure is one
            why = err.strerror or _first_line(err)
            found = list_checkpoints(self.run_dir)
            raise SystemExit(
                f"codec train: could not write {what} ({why}); "
                + (f"{found[-1]} is intact" if found else "no earlier checkpoint exists")
            ) from None

    # -- one step ------------------------------------------------------------------------------

    def train_step(self, wav: torch.Tensor) -> dict[str, float]:
        cfg, logs = self.cfg, {}
        adversarial = self.disc is not None and self.step >= cfg.discriminator.start_step
        with self._autocast():
            out = self.g_model(wav)
        audio, commitment = out["audio"].float(), out["commitment"].float()

        if adversarial:
            with self._autocast():
                real_logits, _ = self.d_model(wav)
                fake_logits, _ = self.d_model(audio.detach())
            d_loss = discriminator_loss(real_logits, fake_logits, cfg.loss.adversarial)
            self._check_finite({"discriminator": d_loss})
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.optim.grad_clip)
            self.opt_d.step()
            self.sched_d.step()
            logs["d_loss"] = float(d_loss.detach())

        losses = {}
        if "mel" in self.weights:
            losses["mel"] = self.mel(audio, wav)
        if "l1" in self.weights:
            losses["l1"] = waveform_l1(audio, wav)
        if "stft" in self.weights:
            losses["stft"] = self.stft(audio, wav)
        if adversarial:
            disc = self.disc  # unwrapped: this pass only routes gradient to the audio
            with self._autocast():
                fake_logits, fake_feats = disc(audio)
                with torch.no_grad():
                    _, real_feats = disc(wav)
            losses["adv"] = generator_loss([f.float() for f in fake_logits], cfg.loss.adversarial)
            losses["feat"] = feature_matching_loss(real_feats, fake_feats)
        self._check_finite(losses | {"commitment": commitment})

        self.opt_g.zero_grad(set_to_none=True)
        w_commit = torch.full_like(commitment, cfg.loss.commitment)
        if self.balancer is not None:
            grad, norms = self.balancer.combine(losses, audio)
            torch.autograd.backward([audio, commitment], [grad, w_commit])
            logs.update({f"grad_{k}": v for k, v in norms.items()})
        else:
            total = sum(self.weights[k] * v for k, v in losses.items())
            (total + cfg.loss.commitment * commitment).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        if not torch.isfinite(grad_norm):
            raise NonFiniteStep("non-finite generator gradient")
        self.opt_g.step()
        self.sched_g.step()
        self._update_ema()
        logs.update({k: float(v.detach()) for k, v in losses.items()})
        logs["commitment"] = float(commitment.detach())
        return logs

    def _check_finite(self, losses: dict[str, torch.Tensor]) -> None:
        """Raise NonFiniteStep on every rank if any rank has a non-finite loss, so that all
        ranks skip the step together (one rank alone in backward would hang DDP)."""
        bad = [name for name, value in losses.items() if not torch.isfinite(value).all()]
        if self.world > 1:
            flag = torch.tensor([float(bool(bad))], device=self.device)
            dist.all_reduce(flag)
            if flag.item() > 0 and not bad:
                bad = ["on another rank"]
        if bad:
            raise NonFiniteStep(f"non-finite loss: {', '.join(bad)}")

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        decay = self.cfg.optim.ema_decay
        for e, p in zip(self.ema.parameters(), self.model.parameters()):
            e.lerp_(p, 1 - decay)
        for e, b in zip(self.ema.buffers(), self.model.buffers()):
            e.copy_(b)  # codebooks are EMA-trained already; the copy follows the live ones
        self.ema.quantizer.set_extra_state(self.model.quantizer.get_extra_state())

    # -- validation ----------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mel distance and SI-SDR on the first validation files (up to valid_seconds each),
        at 1, 2, 4, ... levels and all levels, with the weight-EMA model."""
        model = (self.ema or self.model).eval()
        hop, rate = model.hop_length, model.sample_rate
        levels = sorted(
            {min(2**k, model.levels) for k in range(16) if 2**k <= model.levels} | {model.levels}
        )
        results = {n: {"mel": [], "si_sdr": []} for n in levels}
        for index, record in enumerate(self.valid_records[: self.cfg.trainer.valid_items]):
            seconds = self.cfg.trainer.valid_seconds
            try:  # only the samples validation uses are read
                frames = math.ceil(seconds * record.sample_rate)
                wav = read_for(record.path, rate, model.channels, frames=frames)
            except AudioError as err:
                print(f"warning: {err}", file=sys.stderr)
                continue
            wav = wav[:, : int(seconds * rate)]
            wav = wav[:, : max(hop, wav.shape[-1] // hop * hop)][None].to(self.device)
            samples, show = {}, index < 2 and self.board is not None
            for n in levels:
                decoded = model.decode(model.encode(wav, levels=n), length=wav.shape[-1])
                results[n]["mel"].append(float(self.mel(decoded, wav)))
                results[n]["si_sdr"].append(float(si_sdr(decoded, wav).mean()))
                if show:
                    samples[("codec", model.bitrate(n) / 1000)] = decoded[0].cpu()
            if show:
                self.board.examples(self.step, f"valid{index}", wav[0].cpu(), samples, rate)
        self.model.train()
        out = {}
        for n, r in results.items():
            if r["mel"]:
                kbps = model.bitrate(n) / 1000
                out[f"valid_mel@{kbps:g}kbps"] = sum(r["mel"]) / len(r["mel"])
                out[f"valid_si_sdr@{kbps:g}kbps"] = sum(r["si_sdr"]) / len(r["si_sdr"])
        return out

    # -- the loop ------------------------------------------------------------------------------

    def log(self, record: dict) -> None:
        if not self.main:
            return
        line = json.dumps({"step": self.step, "time": round(time.time(), 3)} | record)
        with open(self.run_dir / "metrics.jsonl", "a") as handle:
            handle.write(line + "\n")
        if self.board is not None:
            self.board.scalars(self.step, record)

    def restore_last_good(self) -> None:
        state = latest_checkpoint(self.run_dir)
        if state is None:
            raise SystemExit("codec train: too many non-finite steps and no checkpoint to restore")
        self.load_state(state)
        print(
            f"restored the last good checkpoint {state['path']} (step {self.step}) after "
            f"{self.cfg.trainer.max_bad_steps} non-finite steps in a row",
            file=sys.stderr,
        )
        self.bad_steps = 0

    def batches(self):
        while True:
            if hasattr(self.loader.dataset, "set_epoch"):
                self.loader.dataset.set_epoch(self.epoch)
            if hasattr(self.loader.sampler, "set_epoch"):
                self.loader.sampler.set_epoch(self.epoch)
            yield from self.loader
            self.epoch += 1

    def run(self) -> Path:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.main:
            for folder in (self.run_dir, self.run_dir / "best", self.run_dir / "model"):
                for path in remove_stale_temps(folder):
                    print(f"removed {path}, left by an interrupted write", file=sys.stderr)
            atomic_write_bytes(self.run_dir / "config.yaml", OmegaConf.to_yaml(cfg).encode())
            held_out = "".join(f"{record.path}\n" for record in self.valid_records)
            atomic_write_bytes(self.run_dir / HELD_OUT_FILE, held_out.encode())
            for problem in self.skipped_files:
                print(f"warning: skipped {problem}", file=sys.stderr)
        resumed = latest_checkpoint(self.run_dir)
        if resumed is not None:
            self.load_state(resumed)
            if self.main:
                print(f"resumed from {resumed['path']} at step {self.step}", file=sys.stderr)
        self.log(
            {
                "event": "start",
                "skipped_files": len(self.skipped_files),
                "parameters": sum(p.numel() for p in self.model.parameters()),
            }
        )
        self.model.train()
        progress = _progress(cfg.trainer.steps, self.step, self.main and cfg.trainer.progress)
        seconds_per_batch = cfg.data.batch_size * cfg.data.segment_seconds * self.world
        started = time.perf_counter()
        with StopRequest() as stop:
            self._loop(progress, seconds_per_batch, started, stop)
        progress.close()
        if self.main:
            self.save()
            exported = self.export()
            if stop.signal is not None:
                print(
                    f"stopped by {stop.signal} at step {self.step}: checkpoint and model written; "
                    "the same command resumes",
                    file=sys.stderr,
                )
            else:
                print(f"trained {self.step} steps; model in {exported}", file=sys.stderr)
        return self.run_dir / "model"

    def _loop(self, progress, seconds_per_batch: float, started: float, stop: StopRequest):
        cfg = self.cfg
        for wav, skipped in self.batches():
            if self.step >= cfg.trainer.steps:
                break
            # under DDP, asking the other ranks costs a collective and a host sync, so they
            # are asked every log_every steps; alone, the flag is read every step
            ask = self.world == 1 or self.step % cfg.trainer.log_every == 0
            if ask and stop.agreed(self.world, self.device):
                self.log({"event": "stopped", "signal": stop.signal or "on another rank"})
                break
            if int(skipped.sum()):
                self.skipped_reads += int(skipped.sum())
                self.log({"event": "skipped_files", "total_skipped_reads": self.skipped_reads})
            wav = wav.to(self.device, non_blocking=True)
            try:
                logs = self.train_step(wav)
                self.bad_steps = 0
            except (NonFiniteStep, ValueError) as err:
                if isinstance(err, ValueError) and "non-finite" not in str(err):
                    raise
                self.bad_steps += 1
                self.opt_g.zero_grad(set_to_none=True)
                self.log({"event": "skipped_step", "reason": str(err)})
                if self.main:
                    print(f"warning: step {self.step} skipped: {err}", file=sys.stderr)
                if self.bad_steps >= cfg.trainer.max_bad_steps:
                    self.restore_last_good()
                continue
            self.step += 1
            if self.step % cfg.trainer.log_every == 0 or self.step == 1:
                elapsed = time.perf_counter() - started
                telemetry = {
                    k: [round(float(x), 4) for x in v.flatten()]
                    for k, v in self.model.quantizer.telemetry().items()
                }
                rate = seconds_per_batch * (self.step - progress.start) / max(elapsed, 1e-9)
                self.log(
                    logs
                    | {
                        "audio_seconds_per_second": rate,
                        "quantizer": telemetry,
                        "lr": self.sched_g.get_last_lr()[0],
                    }
                )
                progress.show(self.step, logs, rate)
            if self.step % cfg.trainer.valid_every == 0 or self.step == cfg.trainer.steps:
                metrics = self.validate() if self.main else {}
                self.log({"event": "valid"} | metrics)
                key = f"valid_mel@{self.model.bitrate(self.model.levels) / 1000:g}kbps"
                if self.main and metrics.get(key, math.inf) < self.best:
                    self.best = metrics[key]
                    self.save(self.run_dir / "best", keep_last=1)
                if self.main:
                    progress.note(metrics)
            if self.step % cfg.trainer.checkpoint_every == 0 and self.step < cfg.trainer.steps:
                self.save()  # the last step's checkpoint and model are written once, by run()
                if self.main:
                    self.export()


class StopRequest:
    """SIGTERM (and SIGINT) set a flag that the loop reads between steps, so a scheduler's
    stop or Ctrl-C ends the run with a checkpoint instead of losing the work since the last."""

    def __init__(self):
        self.signal = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # asked twice: stop now, without the checkpoint
            signal.signal(signum, self.previous[signum])
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def agreed(self, world: int, device) -> bool:
        """True when any rank was asked to stop (every rank must leave at the same step)."""
        flag = self.signal is not None
        if world > 1:
            t = torch.tensor([float(flag)], device=device)
            dist.all_reduce(t)
            flag = t.item() > 0
        return flag


def _as_tuple(value):
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


class _progress:
    """A tqdm bar with loss and throughput, or silence."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.start, self.bar = start, None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)

    def show(self, step: int, logs: dict, rate: float) -> None:
        if self.bar is not None:
            self.bar.n = step
            shown = {k: f"{v:.3g}" for k, v in logs.items() if k in ("mel", "l1", "adv", "d_loss")}
            self.bar.set_postfix(shown | {"audio s/s": f"{rate:.1f}"}, refresh=True)

    def note(self, metrics: dict) -> None:
        if self.bar is not None and metrics:
            self.bar.write(" ".join(f"{k}={v:.3f}" for k, v in metrics.items()))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _first_line(err: BaseException) -> str:
    """An error's message, first line only (Hydra's run on with hints), or its type's name."""
    return (str(err).splitlines() or [type(err).__name__])[0]


def compose_config(overrides: list[str], job_name: str = "codec-train") -> DictConfig:
    """configs/config.yaml with Hydra `overrides` applied (no working-directory change)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name=job_name):
        return compose(config_name="config", overrides=overrides)


def main(argv: list[str] | None = None) -> Path:
    """Compose the config from configs/ with `argv` overrides and train."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(sys.argv[1:] if argv is None else argv)
    try:
        return Trainer(compose_config(overrides)).run()
    except (CheckpointError, ValueError, HydraException, OmegaConfBaseException) as err:
        raise SystemExit(f"codec train: {_first_line(err)}") from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
