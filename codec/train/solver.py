"""The codec's training step: generator and discriminator updates, losses and their weights,
the weight-EMA copy, and validation by number of levels.

    wav (b, c, t) -> Codec -> audio (b, c, t), commitment
        discriminator step (from discriminator.start_step): hinge/LS loss on wav vs audio
        generator step: mel, mel levels, L1, STFT, SI-SDR, STOI, adversarial, feature
                        matching (balanced or weighted)
                        + commitment -> Adam(W) -> EMA of the weights

`CompressionSolver` is what `codec.train.loop.Loop` runs; it knows nothing of checkpoints,
signals or logs beyond the records it hands back.
"""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from codec.audio import AudioError, read_for
from codec.fileio import atomic_write_bytes
from codec.losses import Balancer, discriminator_loss, feature_matching_loss, generator_loss
from codec.metrics import si_sdr
from codec.models import Codec, CodecConfig
from codec.models.finetune import load_for_training
from codec.quality import level_ladder, quality_by_level
from codec.quantize import NonFiniteInputError
from codec.train.checkpoint import list_checkpoints
from codec.train.data import HELD_OUT_FILE, TEST_FILE, build_loader, held_out_paths
from codec.train.display import TensorBoard
from codec.train.loop import Environment, Log, NonFiniteStep, check_finite
from codec.train.optim import freeze, make_optimizer, make_schedule
from codec.train.terms import active_weights, reconstruction_terms


class ResumeRefused(ValueError):
    """A resume that would train on files the run held out so far; `codec train` reports it
    in one line."""


def build_model(cfg: DictConfig) -> Codec:
    """The `model` group's architecture, or with init_from=DIR (or a shipped or imported model's
    name) the saved model there, with its own architecture and weights (an imported EnCodec
    fine-tunes as itself), changed by init_changes (codec.models.finetune)."""
    if not cfg.init_from:
        return Codec(CodecConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True)))
    changes = cfg.get("init_changes")
    changes = OmegaConf.to_container(changes, resolve=True) if changes else {}
    model = load_for_training(cfg.init_from, changes)
    print(
        f"init_from: the model is {cfg.init_from} with its own architecture "
        f"({model.sample_rate} Hz, {model.groups} x {model.levels} x {model.codebook_size} "
        f"codes){'; init_changes: ' + str(changes) if changes else ''}; the model= "
        "settings are not used",
        file=sys.stderr,
    )
    return model


def dead_code_churn(quantizer, vectors_per_step: int) -> str | None:
    """A warning when the dead-code threshold would replace most codes at every step.

    A code's EMA cluster size settles at its mean count per step, vectors_per_step /
    codebook_size for evenly used codes; below `threshold_ema_dead_code` it is revived. At
    8 x 0.5 s x 50 frames/s = 200 vectors and 1024 codes that mean is 0.2, so EnCodec's 2 (set
    for 64 x 1 s x 75 = 4,800 vectors) revives about 970 codes per step."""
    threshold = getattr(quantizer, "threshold_ema_dead_code", 0.0)
    if not threshold:
        return None
    codes = quantizer.codebook_size
    mean_count = vectors_per_step / codes
    if threshold < mean_count:
        return None
    return (
        f"quantizer threshold_ema_dead_code={threshold:g} is at or above the "
        f"{mean_count:.3g} vectors per code per step that this batch gives "
        f"({vectors_per_step} vectors, {codes} codes): most codes are "
        f"replaced at every step; try {mean_count / 10:.2g}"
    )


def build_discriminator(cfg: DictConfig, channels: int):
    names = list(cfg.discriminator.names)
    if not names:
        return None
    from codec.nn.discriminators import make_discriminators

    options = dict(cfg.discriminator.get("options") or {})
    return make_discriminators(names, channels, filters=cfg.discriminator.filters, **options)


def adversarial_step(cfg: DictConfig, step: int) -> bool:
    """Whether `step` updates the discriminator and adds the adversarial terms: from
    discriminator.start_step, every discriminator.every-th step (the steps between train the
    generator on its reconstruction terms alone)."""
    start, every = cfg.discriminator.start_step, cfg.discriminator.get("every", 1)
    return step >= start and (step - start) % every == 0


def discriminator_crop(cfg: DictConfig, step: int, sample_rate: int, length: int):
    """The slice of a training segment the discriminator sees at `step`:
    discriminator.crop_seconds of it (all of it when unset or longer), at an offset drawn from
    the step number, so a resumed run and every DDP rank crop alike."""
    seconds = cfg.discriminator.get("crop_seconds")
    crop = length if not seconds else min(length, round(seconds * sample_rate))
    generator = torch.Generator().manual_seed(int(cfg.seed) * 1_000_003 + step)
    start = int(torch.randint(length - crop + 1, (1,), generator=generator))
    return slice(start, start + crop)


class CompressionSolver:
    """Builds the codec, its discriminators, data, losses and optimisers from `cfg`, and trains
    them one step at a time (see codec.train.loop.Solver)."""

    progress_keys = ("mel", "l1", "adv", "d_loss")
    rate_name = "audio_seconds_per_second"
    rate_label = "audio s/s"

    def __init__(self, cfg: DictConfig, env: Environment, run_dir: Path | None = None):
        self.cfg, self.env = cfg, env
        self.device = env.device
        run_dir = Path(cfg.run_dir if run_dir is None else run_dir)
        self.model = build_model(cfg).to(self.device)
        freeze(self.model, list(cfg.optim.get("frozen") or ()))
        self.ema = copy.deepcopy(self.model).eval() if cfg.optim.ema_decay else None
        self.disc = build_discriminator(cfg, self.model.channels)
        if self.disc is not None:
            self.disc.to(self.device)
        model = self.model  # the data follow the model built, whatever the model group says
        self.loader, self.split, self.skipped_files = build_loader(
            cfg,
            model.sample_rate,
            model.channels,
            model.config.loudness_lufs,
            run_dir,
            env.rank,
            env.world,
        )
        if list_checkpoints(run_dir):  # on every rank, before any of them trains
            self.check_held_out_kept(run_dir)
        self.skipped_reads = 0  # files that failed while reading segments (after the manifest)
        self.last_adversarial: dict[str, float] = {}  # the last adversarial step's figures
        self.units_per_step = cfg.data.batch_size * cfg.data.segment_seconds * env.world
        vectors = round(self.units_per_step * model.frame_rate)  # per codebook and step
        if (churn := dead_code_churn(model.quantizer, vectors)) and env.rank == 0:
            print(f"warning: {churn}", file=sys.stderr)
        self.terms = reconstruction_terms(cfg.loss, model.sample_rate, self.device)
        self.mel = self.terms["mel"]  # validation's distance too
        self.weights = active_weights(
            dict(cfg.loss.weights), self.terms, adversarial=self.disc is not None
        )
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
        if env.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
            if self.disc is not None:
                self.d_model = torch.nn.parallel.DistributedDataParallel(self.disc, device_ids=ids)
            if self.ema is not None:  # DDP gave every rank rank 0's weights; the EMA starts there
                self.ema.load_state_dict(self.model.state_dict())
        steps = cfg.trainer.steps
        self.opt_g = make_optimizer(self.model.parameters(), cfg.optim)
        self.sched_g = make_schedule(self.opt_g, cfg.optim, steps)
        self.opt_d = self.sched_d = None
        if self.disc is not None:
            lr_d = cfg.discriminator.get("lr") or cfg.optim.lr  # null: the generator's
            optim_d = OmegaConf.merge(cfg.optim, {"lr": lr_d})
            self.opt_d = make_optimizer(self.disc.parameters(), optim_d)
            self.sched_d = make_schedule(self.opt_d, optim_d, steps)

    def check_held_out_kept(self, run_dir: Path) -> None:
        """A resumed run must not train on files it held out so far (another split seed,
        fraction or corpus would move them). Runs too old to have heldout.txt are checked
        against the split their saved config gives."""
        held_out = []
        for split in ("valid", "test"):
            try:
                held_out += held_out_paths(run_dir, split)
            except ValueError:  # neither the list nor config.yaml: nothing recorded to keep
                pass
        training = {record.path for record in self.loader.dataset.records}
        moved = [str(path) for path in held_out if str(path) in training]
        if moved:
            raise ResumeRefused(
                f"{run_dir}: resuming would train on {len(moved)} of its held-out files "
                f"({moved[0]}, ...); resume with the data settings it started with "
                "(data.root, data.split_seed, data.valid_fraction, data.test_fraction)"
            )

    @property
    def valid_records(self):
        return self.split.valid

    @property
    def best_metric(self) -> str:
        return f"valid_mel@{self.model.bitrate(self.model.levels) / 1000:g}kbps"

    # -- what the loop asks for ----------------------------------------------------------------

    def write_run_files(self, run_dir: Path) -> None:
        for name, records in ((HELD_OUT_FILE, self.split.valid), (TEST_FILE, self.split.test)):
            atomic_write_bytes(run_dir / name, "".join(f"{r.path}\n" for r in records).encode())
        for problem in self.skipped_files:
            print(f"warning: skipped {problem}", file=sys.stderr)

    def describe(self) -> dict:
        record = {
            "skipped_files": len(self.skipped_files),
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }
        if self.cfg.init_from:
            record["init_from"] = str(self.cfg.init_from)
        return record

    def epoch_batches(self, epoch: int, skip: int = 0):
        self.loader.dataset.set_epoch(epoch)
        self.loader.batch_sampler.set_epoch(epoch, skip)
        return self.loader

    def step_telemetry(self) -> dict:
        telemetry = {
            k: [round(float(x), 4) for x in v.flatten()]
            for k, v in self.model.quantizer.telemetry().items()
        }
        return {"quantizer": telemetry, "lr": self.sched_g.get_last_lr()[0]}

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "disc": self.disc.state_dict() if self.disc is not None else {},
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else {},
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict() if self.sched_d is not None else {},
            "balancer": self.balancer.state_dict() if self.balancer is not None else {},
        }

    def load_state_dict(self, state: dict) -> None:
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

    def export(self, folder: Path) -> Path:
        """The weight-EMA generator (or the raw one) as a model folder `codec encode` reads."""
        return (self.ema or self.model).save_pretrained(folder)

    # -- one step ------------------------------------------------------------------------------

    def train_step(self, batch, step: int, log: Log) -> dict[str, float]:
        """batch: (wav (b, c, t), files newly skipped while reading (b,))."""
        wav, skipped = batch
        if int(skipped.sum()):
            self.skipped_reads += int(skipped.sum())
            log({"event": "skipped_files", "total_skipped_reads": self.skipped_reads})
        wav = wav.to(self.device, non_blocking=True)
        try:
            return self._step(wav, step)
        except (NonFiniteStep, NonFiniteInputError) as err:
            self.opt_g.zero_grad(set_to_none=True)
            raise NonFiniteStep(str(err)) from err

    def _autocast(self):
        enabled = self.cfg.trainer.precision == "bfloat16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _step(self, wav: torch.Tensor, step: int) -> dict[str, float]:
        cfg, logs = self.cfg, {}
        adversarial = self.disc is not None and adversarial_step(cfg, step)
        with self._autocast():
            out = self.g_model(wav)
        audio, commitment = out["audio"].float(), out["commitment"].float()

        if adversarial:
            crop = discriminator_crop(cfg, step, self.model.sample_rate, wav.shape[-1])
            real, fake = wav[..., crop], audio[..., crop]
            with self._autocast():
                real_logits, _ = self.d_model(real)
                fake_logits, _ = self.d_model(fake.detach())
            d_loss = discriminator_loss(real_logits, fake_logits, cfg.loss.adversarial)
            check_finite({"discriminator": d_loss}, self.env)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.optim.grad_clip)
            self.opt_d.step()
            self.sched_d.step()
            logs["d_loss"] = float(d_loss.detach())

        losses = {
            name: term(audio, wav) for name, term in self.terms.items() if name in self.weights
        }
        if adversarial:
            disc = self.disc  # unwrapped: this pass only routes gradient to the audio
            with self._autocast():
                fake_logits, fake_feats = disc(fake)
                with torch.no_grad():
                    _, real_feats = disc(real)
            losses["adv"] = generator_loss([f.float() for f in fake_logits], cfg.loss.adversarial)
            losses["feat"] = feature_matching_loss(real_feats, fake_feats)
        check_finite(losses | {"commitment": commitment}, self.env)

        self.opt_g.zero_grad(set_to_none=True)
        w_commit = torch.full_like(commitment, cfg.loss.commitment)
        gains = {}
        if adversarial:  # an untrained discriminator's gradients are noise: ramp them in
            ramp = cfg.discriminator.get("ramp_steps", 0)
            gain = min(1.0, (step - cfg.discriminator.start_step + 1) / ramp) if ramp else 1.0
            gains = {"adv": gain, "feat": gain}
            logs["adv_gain"] = gain
        if self.balancer is not None:
            grad, norms = self.balancer.combine(losses, audio, gains)
            outputs, grads = [audio], [grad]
            if commitment.requires_grad:  # not with the encoder frozen (optim.frozen)
                outputs, grads = [audio, commitment], [grad, w_commit]
            torch.autograd.backward(outputs, grads)
            logs.update({f"grad_{k}": v for k, v in norms.items()})
        else:
            total = sum(self.weights[k] * gains.get(k, 1.0) * v for k, v in losses.items())
            (total + cfg.loss.commitment * commitment).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        if not torch.isfinite(grad_norm):
            raise NonFiniteStep("non-finite generator gradient")
        self.opt_g.step()
        self.sched_g.step()
        self._update_ema()
        logs.update({k: float(v.detach()) for k, v in losses.items()})
        logs["commitment"] = float(commitment.detach())
        # a discriminator trained every k steps would otherwise never show in logs taken every
        # n steps when k divides n: other steps carry its last figures, with their step
        if adversarial:
            keys = ("adv", "feat", "d_loss", "adv_gain", "grad_adv", "grad_feat")
            self.last_adversarial = {k: logs[k] for k in keys if k in logs}
            self.last_adversarial["adversarial_step"] = step + 1  # the loop's count after it
        logs.update(self.last_adversarial)
        return logs

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

    def validate(self, step: int, board: TensorBoard | None) -> dict[str, float]:
        """Mel distance and SI-SDR on the first validation files (up to valid_seconds each),
        at 1, 2, 4, ... levels and all levels, with the weight-EMA model."""
        model = (self.ema or self.model).eval()
        hop, rate = model.hop_length, model.sample_rate
        seconds = self.cfg.trainer.valid_seconds
        clips = []  # (index among the records, wav (c, t))
        for index, record in enumerate(self.valid_records[: self.cfg.trainer.valid_items]):
            try:  # only the samples validation uses are read
                frames = math.ceil(seconds * record.sample_rate)
                wav = read_for(record.path, rate, model.channels, frames=frames)
            except AudioError as err:
                print(f"warning: {err}", file=sys.stderr)
                continue
            wav = wav[:, : int(seconds * rate)]
            clips.append((index, wav[:, : max(hop, wav.shape[-1] // hop * hop)]))
        levels = level_ladder(model.levels)
        results = {n: {"mel": [], "si_sdr": []} for n in levels}
        measured = quality_by_level(model, [wav for _, wav in clips], levels, self._scores)
        for (index, wav), clip in zip(clips, measured):
            for n, scores in clip.scores.items():
                for key, value in scores.items():
                    results[n][key].append(value)
            if index < 2 and board is not None:
                decoded = {("codec", model.bitrate(n) / 1000): y for n, y in clip.decoded.items()}
                self._show(board, step, f"valid{index}", wav, decoded, rate)
        self.model.train()
        out = {}
        for n, r in results.items():
            if r["mel"]:
                kbps = model.bitrate(n) / 1000
                out[f"valid_mel@{kbps:g}kbps"] = sum(r["mel"]) / len(r["mel"])
                out[f"valid_si_sdr@{kbps:g}kbps"] = sum(r["si_sdr"]) / len(r["si_sdr"])
        return out

    def _scores(self, estimate: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
        est, ref = estimate[None].to(self.device), reference[None].to(self.device)
        return {"mel": float(self.mel(est, ref)), "si_sdr": float(si_sdr(est, ref).mean())}

    @staticmethod
    def _show(board: TensorBoard, step: int, name: str, reference, decoded: dict, rate: int):
        """Audio samples and spectrograms of one validation clip in TensorBoard."""
        from codec.report import spectrogram_plot

        board.writer.add_audio(f"{name}/original", reference.mean(0).clamp(-1, 1), step, rate)
        for (_, kbps), wav in decoded.items():
            board.writer.add_audio(f"{name}/{kbps:g}kbps", wav.mean(0).clamp(-1, 1), step, rate)
        figure = spectrogram_plot(reference, decoded, rate)
        board.writer.add_figure(f"{name}/spectrograms", figure, step)
