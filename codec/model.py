"""The codec: SEANet encoder -> GroupedResidualVQ -> SEANet decoder.

    audio (b, c, t) -> latents (b, D, f) -> codes (b, groups, levels, f) -> audio (b, c, t)

One model serves every bitrate its levels give (structured dropout trains it to):
bits per second = frame_rate * groups * levels * log2(codebook_size).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from einops import rearrange
from torch import nn
from torch.nn.utils import parametrize

from codec.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from codec.errors import first_line
from codec.fileio import atomic_write_bytes
from codec.nn import SEANetDecoder, SEANetEncoder, fold_weight_norm, streaming
from codec.quantize import GroupedResidualVQ

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


class ModelFormatError(ValueError):
    """A saved model folder that cannot be loaded; the message names the folder and problem."""


@dataclass
class CodecConfig:
    """Everything needed to rebuild a Codec. Defaults: EnCodec's 24 kHz architecture (32 x 1024
    codes, 1.5-24 kbps), non-causal unless `causal=True` (EnCodec's 24 kHz model is causal)."""

    sample_rate: int = 24_000
    channels: int = 1
    dimension: int = 128
    n_filters: int = 32
    ratios: list[int] = field(default_factory=lambda: [8, 5, 4, 2])
    n_residual_layers: int = 1
    kernel_size: int = 7
    residual_kernel_size: int = 3
    last_kernel_size: int = 7
    dilation_base: int = 2
    compress: int = 2
    lstm: int = 2
    causal: bool = False
    activation: str = "elu"
    norm: str = "weight_norm"
    pad_mode: str = "reflect"
    true_skip: bool = False
    groups: int = 1
    levels: int = 32
    codebook_size: int = 1024
    codebook_dim: int | None = None
    quantizer: dict = field(
        default_factory=lambda: {
            "decay": 0.99,
            "kmeans_init": True,
            "kmeans_iters": 50,
            "threshold_ema_dead_code": 2,
            "quantize_dropout": True,
        }
    )
    loudness_lufs: float | None = None  # normalise input loudness to this target, restore on decode
    model_id: str = "codec"

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)

    @classmethod
    def from_dict(cls, data: dict) -> CodecConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ModelFormatError(f"unknown config fields: {', '.join(sorted(unknown))}")
        config = cls(**data)
        config.validate()
        return config

    # (low, high) of every integer field: a config from a file can build nothing larger, so a
    # hostile config.json cannot make the loader allocate without bound
    BOUNDS = {
        "sample_rate": (MIN_SAMPLE_RATE, MAX_SAMPLE_RATE),
        "channels": (1, 2),
        "dimension": (1, 8192),
        "n_filters": (1, 4096),
        "n_residual_layers": (0, 16),
        "kernel_size": (1, 63),
        "residual_kernel_size": (1, 63),
        "last_kernel_size": (1, 63),
        "dilation_base": (1, 8),
        "compress": (1, 64),
        "lstm": (0, 8),
        "groups": (1, 64),
        "levels": (1, 1024),
        "codebook_size": (2, 2**20),
    }

    def least_weight_bytes(self) -> int:
        """A lower bound on the float32 weights this config builds: the strided convs of
        encoder and decoder, their residual convs and the codebooks, a subset of the real
        parameters. Checked against the weights file before anything is built, so a config
        that asks for more than the file holds is refused without allocating it."""
        floats, channels = 0, self.n_filters
        for ratio in reversed(self.ratios):
            residual = self.n_residual_layers * channels * max(1, channels // self.compress)
            floats += 2 * residual * self.residual_kernel_size
            floats += 2 * channels * (2 * channels) * 2 * ratio  # down- and upsampling convs
            channels *= 2
        code_dim = self.codebook_dim or self.dimension // self.groups
        floats += self.levels * self.groups * self.codebook_size * code_dim
        return 4 * floats

    def validate(self) -> None:
        """Raise ModelFormatError naming the first field that is of the wrong type or range."""

        def integer(name, value, low, high):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ModelFormatError(f"config field {name} must be an integer in [{low}, {high}]")

        for name, (low, high) in self.BOUNDS.items():
            integer(name, getattr(self, name), low, high)
        if not isinstance(self.ratios, (list, tuple)) or not 1 <= len(self.ratios) <= 8:
            raise ModelFormatError("config field ratios must be a list of 1 to 8 integers")
        for ratio in self.ratios:
            integer("ratios", ratio, 1, 64)
        if self.codebook_dim is not None:
            integer("codebook_dim", self.codebook_dim, 1, 8192)
        if self.dimension % self.groups:
            raise ModelFormatError("config field dimension must be a multiple of groups")
        for name in ("causal", "true_skip"):
            if not isinstance(getattr(self, name), bool):
                raise ModelFormatError(f"config field {name} must be true or false")
        for name in ("activation", "norm", "pad_mode", "model_id"):
            if not isinstance(getattr(self, name), str):
                raise ModelFormatError(f"config field {name} must be a string")
        if not isinstance(self.quantizer, dict):
            raise ModelFormatError("config field quantizer must be an object")
        if self.loudness_lufs is not None and (
            isinstance(self.loudness_lufs, bool)
            or not isinstance(self.loudness_lufs, (int, float))
            or not -70.0 <= self.loudness_lufs <= 0.0
        ):
            raise ModelFormatError("config field loudness_lufs must be null or in [-70, 0]")


class Codec(nn.Module):
    """Encoder, quantizer and decoder with bitrate control.

    `encode(wav (b, c, t)) -> codes (b, g, levels, f)`, `decode(codes) -> wav (b, c, f * hop)`,
    `forward(wav)` -> what training needs (reconstruction, commitment losses, codes).
    """

    def __init__(self, config: CodecConfig | None = None, **overrides):
        super().__init__()
        config = dataclasses.replace(config or CodecConfig(), **overrides)
        self.config = config
        conv = dict(
            channels=config.channels,
            dimension=config.dimension,
            n_filters=config.n_filters,
            ratios=list(config.ratios),
            n_residual_layers=config.n_residual_layers,
            kernel_size=config.kernel_size,
            residual_kernel_size=config.residual_kernel_size,
            last_kernel_size=config.last_kernel_size,
            dilation_base=config.dilation_base,
            compress=config.compress,
            lstm=config.lstm,
            causal=config.causal,
            activation=config.activation,
            norm=config.norm,
            pad_mode=config.pad_mode,
            true_skip=config.true_skip,
        )
        self.precision = "float32"  # inference precision of the convolutions; see `encode`
        self.encoder = SEANetEncoder(**conv)
        self.decoder = SEANetDecoder(**conv)
        self.quantizer = GroupedResidualVQ(
            dim=config.dimension,
            groups=config.groups,
            num_quantizers=config.levels,
            codebook_size=config.codebook_size,
            codebook_dim=config.codebook_dim,
            **config.quantizer,
        )

    # -- sizes and rates -----------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def groups(self) -> int:
        return self.config.groups

    @property
    def levels(self) -> int:
        return self.config.levels

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def bitrate(self, levels: int) -> float:
        """Bits per second with the first `levels` levels."""
        return self.frame_rate * self.groups * levels * math.log2(self.codebook_size)

    @property
    def bandwidths(self) -> list[float]:
        """kbps that 1, 2, ... all levels give."""
        return [self.bitrate(n) / 1000 for n in range(1, self.levels + 1)]

    def levels_for(self, bandwidth: float | None = None, levels: int | None = None) -> int:
        """Levels to use for a bandwidth in kbps (the most that fit) or an explicit count."""
        if bandwidth is not None and levels is not None:
            raise ValueError("give a bandwidth or a number of levels, not both")
        if levels is not None:
            if not 1 <= levels <= self.levels:
                raise ValueError(f"levels must be in [1, {self.levels}], got {levels}")
            return levels
        if bandwidth is None:
            return self.levels
        fitting = [n for n, kbps in enumerate(self.bandwidths, 1) if kbps <= bandwidth + 1e-9]
        if not fitting:
            raise ValueError(
                f"bandwidth {bandwidth} kbps is below this model's lowest, "
                f"{self.bandwidths[0]:.3g} kbps; available: "
                + ", ".join(f"{b:.3g}" for b in self.bandwidths)
            )
        return fitting[-1]

    def frames_for(self, samples: int) -> int:
        return math.ceil(samples / self.hop_length)

    # -- coding --------------------------------------------------------------------------------

    def _check_audio(self, wav: torch.Tensor) -> None:
        if wav.ndim != 3 or wav.shape[1] != self.channels:
            raise ValueError(
                f"expected audio of shape (batch, {self.channels}, samples), got {tuple(wav.shape)}"
            )
        if wav.shape[-1] == 0:
            raise ValueError("audio has no samples")
        if not wav.is_floating_point():
            raise ValueError(
                f"expected floating-point audio in [-1, 1], got {wav.dtype} "
                "(divide integer PCM by its full scale, e.g. 32768 for int16)"
            )

    def _autocast(self, device: torch.device):
        """bf16 autocast for the convolutions when `precision == "bfloat16"` (the quantizer
        always runs in fp32). About 2x faster on CPUs with AVX512-BF16; codes can differ from
        fp32 in rare near-ties."""
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be float32 or bfloat16, got {self.precision!r}")
        enabled = self.precision == "bfloat16" and not self.training
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

    def _latents(self, wav: torch.Tensor) -> torch.Tensor:
        with self._autocast(wav.device):
            latents = self.encoder(wav)
        return rearrange(latents.float(), "b d f -> b f d")

    def _quantize(self, latents, num_levels=None):
        out, codes, losses = self.quantizer(latents, num_levels=num_levels)
        return out, rearrange(codes, "g b f q -> b g q f"), losses

    def _decode_latents(self, quantized: torch.Tensor) -> torch.Tensor:
        with self._autocast(quantized.device):
            wav = self.decoder(rearrange(quantized, "b f d -> b d f"))
        return wav.float()

    @torch.no_grad()
    def encode(
        self, wav: torch.Tensor, bandwidth: float | None = None, levels: int | None = None
    ) -> torch.Tensor:
        """wav (b, c, t) at the model rate -> codes (b, g, levels, ceil(t / hop)), int64."""
        self._check_audio(wav)
        if not torch.isfinite(wav).all():
            raise ValueError("audio contains NaN or Inf samples")
        n = self.levels_for(bandwidth, levels)
        _, codes, _ = self._quantize(self._latents(wav.float()), num_levels=n)
        return codes[:, :, :n]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """codes (b, g, levels, f), levels <= the model's (missing levels count as zero)
        -> wav (b, c, f * hop), or the first `length` samples."""
        if codes.ndim != 4 or codes.shape[1] != self.groups:
            raise ValueError(
                f"expected codes of shape (batch, {self.groups}, levels, frames), "
                f"got {tuple(codes.shape)}"
            )
        if codes.shape[-1] == 0:
            raise ValueError("codes have no frames")
        quantized = self.quantizer.get_output_from_indices(rearrange(codes, "b g q f -> g b f q"))
        wav = self._decode_latents(quantized)
        return wav if length is None else wav[..., :length]

    def forward(self, wav: torch.Tensor) -> dict:
        """Training pass: {'audio': reconstruction (b, c, t), 'commitment': scalar loss,
        'codes': (b, g, q, f)} with the quantizer's dropout active in train mode."""
        self._check_audio(wav)
        quantized, codes, losses = self._quantize(self._latents(wav))
        audio = self._decode_latents(quantized)[..., : wav.shape[-1]]
        return {"audio": audio, "commitment": losses.sum(), "codes": codes}

    def streaming(self):
        """Context manager for stateful chunk-by-chunk coding of a causal model:

            with model.streaming():
                codes = [model.encode(chunk) for chunk in chunks]   # chunks: multiples of hop

        gives the offline codes (and `decode` frame by frame the offline audio); latency is one
        hop. State is cleared when the block ends."""
        if not self.config.causal:
            raise ValueError("streaming needs a causal model (this one is non-causal)")
        return streaming(self)

    # -- saving --------------------------------------------------------------------------------

    def weights_hash(self) -> str:
        """sha256 of the weights (names, shapes, dtypes, bytes), 16 hex digits."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        return digest.hexdigest()[:16]

    def save_pretrained(self, directory) -> Path:
        """Write config.json and model.safetensors (atomically) to `directory`."""
        from safetensors.torch import save

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        config = dataclasses.asdict(self.config) | {"weights_hash": self.weights_hash()}
        if not any(parametrize.is_parametrized(m) for m in self.modules()):
            config["norm"] = "none"  # weight norm was folded (inference): plain weights

        # bytes written by Python, so a failed write raises OSError with its reason
        atomic_write_bytes(directory / WEIGHTS_FILE, save(state))
        atomic_write_bytes(directory / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
        return directory

    @classmethod
    def from_pretrained(cls, directory, inference: bool = True) -> Codec:
        """Load a folder written by `save_pretrained`; nothing is unpickled. With `inference`,
        weight norm is folded away and the model is in eval mode."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise ModelFormatError(f"{directory}: not a saved model (missing {path.name})")
        try:
            data = json.loads(config_path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            expected_hash = data.pop("weights_hash", None)
            config = CodecConfig.from_dict(data)
        except (ValueError, TypeError) as err:
            raise ModelFormatError(f"{config_path}: bad model config ({err})") from None
        try:
            state = load_file(str(weights_path))
        except (SafetensorError, OSError, ValueError) as err:
            raise ModelFormatError(f"{weights_path}: unreadable weights ({err})") from None
        # the weights read are bounded by the file; what the config would build is checked
        # against it before anything is built
        need, size = config.least_weight_bytes(), weights_path.stat().st_size
        if need > size:
            raise ModelFormatError(
                f"{weights_path}: config.json describes at least {need} bytes of weights, "
                f"the file holds {size}"
            )
        model = cls(config)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            first = first_line(err)
            raise ModelFormatError(
                f"{weights_path}: weights do not fit the config ({first})"
            ) from None
        if expected_hash is not None and model.weights_hash() != expected_hash:
            raise ModelFormatError(f"{weights_path}: weights hash does not match config.json")
        model.saved_hash = expected_hash or model.weights_hash()
        if inference:
            model.eval()
            fold_weight_norm(model)
        return model

    @property
    def model_hash(self) -> str:
        """The hash recorded when saved (stable after weight-norm folding), else computed."""
        return getattr(self, "saved_hash", None) or self.weights_hash()
