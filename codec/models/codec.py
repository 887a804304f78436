"""The codec: an encoder, a quantizer and a decoder, each built by name from a nested config.

    audio (b, c, t) -> encoder -> latents (b, D, f) -> quantizer -> codes (b, groups, levels, f)
    codes -> quantizer -> latents -> decoder -> audio (b, c, t)

One model serves every bitrate its levels give (structured dropout trains it to):
bits per second = frame_rate * groups * levels * log2(codebook_size).
"""

from __future__ import annotations

import hashlib
import math
import warnings

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from codec.models.builders import build_part
from codec.models.config import CodecConfig
from codec.models.folder import load_model, save_model
from codec.models.names import resolve_model
from codec.models.segments import Segmentation, overlap_add, rms_scale
from codec.nn import cpu_isa, native_bf16, streaming

PRECISIONS = ("float32", "bfloat16")


class Codec(nn.Module):
    """Encoder, quantizer and decoder with bitrate control.

    `encode(wav (b, c, t)) -> codes (b, g, levels, f)`, `decode(codes) -> wav (b, c, f * hop)`,
    `forward(wav)` -> what training needs (reconstruction, commitment losses, codes).
    """

    def __init__(self, config: CodecConfig | None = None):
        super().__init__()
        config = config or CodecConfig()
        self.config = config
        self.precision = "float32"  # inference precision of encoder and decoder; see `encode`
        # another runtime for inference (codec.runtime.onnx.attach): encode_frames,
        # decode_frames and streaming(batch_size) in place of the layers'
        self.runtime = None
        self.encoder = build_part("encoder", *config.part("encoder"), config)
        self.quantizer = build_part("quantizer", *config.part("quantizer"), config)
        self.decoder = build_part("decoder", *config.part("decoder"), config)
        if self.decoder_hop != self.hop_length:
            raise ValueError(
                f"decoder upsamples by {self.decoder_hop}, encoder downsamples by {self.hop_length}"
            )
        segment = config.segment_options
        self.segmentation = (
            Segmentation.of(segment.seconds, segment.overlap, config.sample_rate, self.hop_length)
            if segment
            else None
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
        return self.encoder.hop_length

    @property
    def decoder_hop(self) -> int:
        return self.decoder.hop_length

    @property
    def causal(self) -> bool:
        return bool(self.encoder.causal and self.decoder.causal)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def groups(self) -> int:
        return self.config.quantizer_options.groups

    @property
    def levels(self) -> int:
        return self.config.quantizer_options.levels

    @property
    def codebook_size(self) -> int:
        return self.config.quantizer_options.codebook_size

    @property
    def model_id(self) -> str:
        return self.config.model_id

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
        """Frames that `samples` samples code to (all segments', for a segmented model)."""
        if self.segmentation is not None:
            return self.segmentation.frames(samples)
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
        """bf16 autocast for encoder and decoder when `precision == "bfloat16"` (the quantizer
        always runs in fp32). About 2x faster on CPUs with native bf16 (AVX512-BF16, AMX);
        elsewhere bf16 is emulated and 10x+ slower, so fp32 runs instead, with a warning.
        Codes can differ from fp32 in rare near-ties."""
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be float32 or bfloat16, got {self.precision!r}")
        enabled = self.precision == "bfloat16" and not self.training
        if enabled and device.type == "cpu" and not native_bf16():
            warnings.warn(
                f"bfloat16 is emulated on this CPU ({cpu_isa()}) and runs many times slower "
                "than float32: running in float32",
                stacklevel=3,
            )
            enabled = False
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

    def _latents(self, wav: torch.Tensor) -> torch.Tensor:
        with self._autocast(wav.device):
            latents = self.encoder(wav)
        return rearrange(latents.float(), "b d f -> b f d")

    def _quantize(self, latents, num_levels=None):
        """latents (b, f, d) -> (quantized (b, f, d), codes (b, g, q, f), losses (g, q))."""
        result = self.quantizer.quantize(latents, num_levels=num_levels)
        return result.quantized, rearrange(result.indices, "g b f q -> b g q f"), result.losses

    def _decode_latents(self, quantized: torch.Tensor) -> torch.Tensor:
        """quantized (b, f, d) -> wav (b, c, f * hop); a decoder that gives fewer samples (DAC
        1.0's, with odd rates) is padded with zeros to that length."""
        with self._autocast(quantized.device):
            wav = self.decoder(rearrange(quantized, "b f d -> b d f"))
        missing = quantized.shape[1] * self.hop_length - wav.shape[-1]
        return F.pad(wav.float(), (0, missing)) if missing > 0 else wav.float()

    def _encode_frames(self, wav: torch.Tensor, levels: int) -> torch.Tensor:
        if self.runtime is not None:
            return self.runtime.encode_frames(wav, levels)
        _, codes, _ = self._quantize(self._latents(wav), num_levels=levels)
        return codes[:, :, :levels]

    def segment_scales(self, wav: torch.Tensor) -> torch.Tensor | None:
        """wav (b, c, t) -> the scale each segment is divided by before encoding, (b, segments);
        None for a model without normalised segments."""
        segment = self.config.segment_options
        if segment is None or not segment.normalize:
            return None
        spans = self.segmentation.spans(wav.shape[-1])
        return torch.stack([rms_scale(wav[..., a:b].float()) for a, b in spans], 1)

    @torch.no_grad()
    def encode(
        self, wav: torch.Tensor, bandwidth: float | None = None, levels: int | None = None
    ) -> torch.Tensor:
        """wav (b, c, t) at the model rate -> codes (b, g, levels, frames_for(t)), int64."""
        self._check_audio(wav)
        if not torch.isfinite(wav).all():
            raise ValueError("audio contains NaN or Inf samples")
        n = self.levels_for(bandwidth, levels)
        wav = wav.float()
        if self.segmentation is None:
            return self._encode_frames(wav, n)
        scales = self.segment_scales(wav)
        codes = []
        for index, (start, end) in enumerate(self.segmentation.spans(wav.shape[-1])):
            piece = wav[..., start:end]
            if scales is not None:
                piece = piece / scales[:, index, None, None]
            codes.append(self._encode_frames(piece, n))
        return torch.cat(codes, -1)

    @torch.no_grad()
    def decode(
        self,
        codes: torch.Tensor,
        length: int | None = None,
        scales: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """codes (b, g, levels, f), levels <= the model's (missing levels count as zero)
        -> wav (b, c, f * hop), or the first `length` samples. A segmented model decodes each
        segment, multiplies it by its scale (b, segments) when given, and overlap-adds them.

        A decoder that gives fewer than f * hop samples (DAC 1.0's 16 and 24 kHz models give
        320 f - 8) has its missing tail filled with zeros, so samples past
        `decoder.output_length(f)` are silence, also within `length`."""
        if codes.ndim != 4 or codes.shape[1] != self.groups:
            raise ValueError(
                f"expected codes of shape (batch, {self.groups}, levels, frames), "
                f"got {tuple(codes.shape)}"
            )
        if codes.shape[-1] == 0:
            raise ValueError("codes have no frames")
        if self.segmentation is None:
            wav = self._decode_frames(codes)
        else:
            pieces = []
            counts = self.segmentation.counts_for_frames(codes.shape[-1])
            for index, part in enumerate(codes.split(counts, -1)):
                piece = self._decode_frames(part)
                if scales is not None:
                    piece = piece * scales[:, index, None, None].to(piece)
                pieces.append(piece)
            wav = overlap_add(pieces, self.segmentation.stride)
        return wav if length is None else wav[..., :length]

    def _decode_frames(self, codes: torch.Tensor) -> torch.Tensor:
        if self.runtime is not None:
            return self.runtime.decode_frames(codes)
        quantized = self.quantizer.decode(rearrange(codes, "b g q f -> g b f q"))
        return self._decode_latents(quantized)

    def forward(self, wav: torch.Tensor) -> dict:
        """Training pass: {'audio': reconstruction (b, c, t), 'commitment': scalar loss,
        'codes': (b, g, q, f)} with the quantizer's dropout active in train mode."""
        self._check_audio(wav)
        quantized, codes, losses = self._quantize(self._latents(wav))
        audio = self._decode_latents(quantized)[..., : wav.shape[-1]]
        return {"audio": audio, "commitment": losses.sum(), "codes": codes}

    def streaming(self, batch_size: int = 1):
        """Context manager for stateful chunk-by-chunk coding of a causal model, `batch_size`
        streams side by side (codec.nn.streaming):

            with model.streaming(batch_size=1):
                codes = [model.encode(chunk) for chunk in chunks]   # chunks: multiples of hop

        gives the offline codes (and `decode` frame by frame the offline audio; with
        reflection padding, once the first chunk is longer than every layer's padding);
        latency is one hop. The layers' states can be read and set with
        codec.nn.get_streaming_state / set_streaming_state, items restarted with
        reset_streaming; they are dropped when the block ends."""
        if not self.causal:
            raise ValueError("streaming needs a causal model (this one is non-causal)")
        if self.runtime is not None:
            return self.runtime.streaming(batch_size)
        return streaming(self, batch_size)

    # -- identity ------------------------------------------------------------------------------

    def weights_hash(self) -> str:
        """sha256 of the weights (names, shapes, dtypes, bytes), 16 hex digits."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        return digest.hexdigest()[:16]

    @property
    def model_hash(self) -> str:
        """The hash recorded when saved (stable after weight-norm folding), else computed."""
        return getattr(self, "saved_hash", None) or self.weights_hash()

    def save_pretrained(self, directory, storage: torch.dtype | None = None):
        """Write config.json and model.safetensors (atomically) to `directory`; `storage`
        float16 or bfloat16 stores the tensors that are exact in it so (see
        codec.models.folder.round_to_storage)."""
        return save_model(self, directory, storage)

    @classmethod
    def from_pretrained(cls, directory, inference: bool = True) -> Codec:
        """Load a folder written by `save_pretrained`, or a model by the short name the CLI
        takes (a shipped model such as "speech16k", or one imported into the cache such as
        "encodec_24khz"); nothing is unpickled. With `inference`, weight norm is folded away
        and the model is in eval mode."""
        return load_model(resolve_model(directory), cls, inference=inference)
