"""Exported graphs (codec.runtime.export) run by onnxruntime, on numpy arrays.

    graphs = OnnxGraphs.load("out/", threads=1)
    codes = graphs.encode(audio)                   # (b, c, t) float32 -> (b, g, levels, f)
    audio = graphs.decode(codes)                   # -> (b, c, f * hop)
    stream = graphs.stream(batch_size=1)           # causal models: one frame per step
    codes = stream.encode(audio[..., :hop]); audio = stream.decode(codes)

A folder is checked before use: its manifest (format, version, fields), and each graph file
against the sha256 the manifest records, so a truncated or replaced file is named before
onnxruntime reads it. Every problem is an `OnnxModelError` of one line naming the file.

`attach(model, graphs)` makes a Codec run its encode, decode and streaming through the graphs
(the Codec's `runtime` hook): the CLI's `--runtime onnx`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np

FORMAT, VERSION, MANIFEST = "codec-onnx", 1, "manifest.json"
MAX_MANIFEST_BYTES = 1 << 22
REQUIRED = {
    "model_id": str,
    "weights_hash": str,
    "sample_rate": int,
    "channels": int,
    "hop_length": int,
    "groups": int,
    "levels": int,
    "encoder_levels": int,
    "codebook_size": int,
    "causal": bool,
    "graphs": dict,
}


class OnnxModelError(ValueError):
    """An exported model folder that cannot be used; the message names the file and problem."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        raise OnnxModelError(
            f"{directory}: not an exported model (no {MANIFEST}; see codec export)"
        )
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError("too large")
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise OnnxModelError(f"{path}: unreadable manifest ({err})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise OnnxModelError(
            f"{path}: not a {FORMAT} version {VERSION} manifest "
            f"(format {manifest.get('format')!r}, version {manifest.get('version')!r})"
        )
    for key, kind in REQUIRED.items():
        value = manifest.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise OnnxModelError(f"{path}: field {key} missing or not a {kind.__name__}")
    for name in ("encoder", "decoder"):
        if name not in manifest["graphs"]:
            raise OnnxModelError(f"{path}: no {name} graph listed")
    return manifest


class OnnxGraphs:
    """An exported model's graphs in onnxruntime sessions (see the module doc)."""

    def __init__(self, directory: Path, manifest: dict, sessions: dict):
        self.directory, self.manifest, self.sessions = directory, manifest, sessions
        for key in ("model_id", "weights_hash", "sample_rate", "channels", "hop_length"):
            setattr(self, key, manifest[key])
        self.groups, self.levels = manifest["groups"], manifest["levels"]
        self.encoder_levels, self.causal = manifest["encoder_levels"], manifest["causal"]

    @classmethod
    def load(cls, directory, threads: int | None = 1) -> OnnxGraphs:
        """Check the folder and open its graphs; `threads`: onnxruntime's intra-op threads
        (None: its default, all cores)."""
        import onnxruntime as ort

        directory = Path(directory)
        manifest = read_manifest(directory)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3
        sessions = {}
        for name, entry in manifest["graphs"].items():
            path = directory / str(entry.get("file", ""))
            if not path.is_file() or path.parent != directory:
                raise OnnxModelError(f"{path}: the {name} graph the manifest lists is missing")
            if _sha256(path) != entry.get("sha256"):
                raise OnnxModelError(
                    f"{path}: not the {name} graph this manifest was exported with "
                    "(truncated, damaged or replaced; export again)"
                )
            try:
                sessions[name] = ort.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
            except Exception as err:  # onnxruntime raises its own exception types
                line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise OnnxModelError(f"{path}: onnxruntime cannot load it ({line})") from None
        return cls(directory, manifest, sessions)

    def check_model(self, model_id: str, weights_hash: str) -> None:
        """Raise unless these graphs were exported from that model (id and weights hash)."""
        if self.model_id != model_id or self.weights_hash.lower() != weights_hash.lower():
            raise OnnxModelError(
                f"{self.directory}: exported from model {self.model_id!r} (weights "
                f"{self.weights_hash}), not from {model_id!r} (weights {weights_hash})"
            )

    def encode(self, audio: np.ndarray, levels: int | None = None) -> np.ndarray:
        """audio (b, channels, t) -> codes (b, groups, levels, ceil(t / hop)), int64."""
        levels = self._levels(levels)
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        codes = self.sessions["encoder"].run(None, {"audio": audio})[0]
        return codes[:, :, :levels]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """codes (b, groups, L, f), L <= levels -> audio (b, channels, f * hop), float32."""
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        return self.sessions["decoder"].run(None, {"codes": codes})[0]

    def _levels(self, levels: int | None) -> int:
        levels = self.encoder_levels if levels is None else levels
        if not 1 <= levels <= self.encoder_levels:
            raise ValueError(
                f"these graphs code 1 to {self.encoder_levels} levels, not {levels} "
                "(export with more levels)"
            )
        return levels

    def stream(self, batch_size: int = 1) -> Stream:
        if "encoder_step" not in self.sessions or "decoder_step" not in self.sessions:
            raise ValueError("streaming needs a causal model's step graphs (this one has none)")
        return Stream(self, batch_size)


class Stream:
    """Streams of `batch_size` items through the step graphs, one frame per step; the state
    is held here between calls (`state`: {"encoder_step": [...], "decoder_step": [...]})."""

    def __init__(self, graphs: OnnxGraphs, batch_size: int):
        self.graphs, self.batch_size = graphs, batch_size
        self.state = {name: self.fresh(name) for name in ("encoder_step", "decoder_step")}

    def fresh(self, name: str) -> list[np.ndarray]:
        spec = self.graphs.manifest["graphs"][name]["state"]
        return [
            np.full(
                [self.batch_size, *entry["shape"]],
                entry["fresh"],
                dtype=np.bool_ if entry["dtype"] == "bool" else np.float32,
            )
            for entry in spec
        ]

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Restart the items where `mask` (batch,) is True (all without one)."""
        for name, arrays in self.state.items():
            fresh = self.fresh(name)
            for i, (old, new) in enumerate(zip(arrays, fresh)):
                keep = np.ones(self.batch_size, bool) if mask is None else np.asarray(mask, bool)
                arrays[i] = np.where(keep.reshape(-1, *[1] * (old.ndim - 1)), new, old)

    def _step(self, name: str, key: str, x: np.ndarray) -> np.ndarray:
        session, spec = self.graphs.sessions[name], self.graphs.manifest["graphs"][name]["state"]
        feeds = {key: x, **{e["input"]: v for e, v in zip(spec, self.state[name])}}
        out = session.run(None, feeds)
        self.state[name] = out[1:]
        return out[0]

    def _check_batch(self, x: np.ndarray) -> None:
        if x.shape[0] != self.batch_size:
            raise ValueError(f"stream of a batch of {self.batch_size}, got a batch of {x.shape[0]}")

    def encode(self, audio: np.ndarray, levels: int | None = None) -> np.ndarray:
        """audio (b, channels, n * hop) -> codes (b, groups, levels, n), frame by frame."""
        self._check_batch(audio)
        hop, levels = self.graphs.hop_length, self.graphs._levels(levels)
        if audio.shape[-1] % hop:
            raise ValueError(f"a stream's chunks are whole hops ({hop} samples)")
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        frames = [
            self._step("encoder_step", "audio", audio[..., k : k + hop])
            for k in range(0, audio.shape[-1], hop)
        ]
        return np.concatenate(frames, -1)[:, :, :levels]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """codes (b, groups, L, n) -> audio (b, channels, n * hop), frame by frame."""
        self._check_batch(codes)
        missing = self.graphs.levels - codes.shape[2]  # the step takes every level
        if missing < 0:
            raise ValueError(
                f"codes of {codes.shape[2]} levels; the model has {self.graphs.levels}"
            )
        codes = np.pad(
            np.asarray(codes, dtype=np.int64),
            ((0, 0), (0, 0), (0, missing), (0, 0)),
            constant_values=-1,
        )
        pieces = [
            self._step("decoder_step", "codes", codes[..., k : k + 1])
            for k in range(codes.shape[-1])
        ]
        return np.concatenate(pieces, -1)


class OnnxRuntime:
    """The Codec `runtime` hook: whole files through the graphs, and inside
    `model.streaming()` the step graphs; a stream's last partial chunk (not whole hops) runs
    on the model's own layers, with the stream's state handed to them."""

    def __init__(self, model, graphs: OnnxGraphs):
        graphs.check_model(model.model_id, model.model_hash)
        self.model, self.graphs = model, graphs
        self.stream: Stream | None = None

    def encode_frames(self, wav, levels: int):
        import torch

        audio = wav.detach().cpu().float().numpy()
        if self.stream is None:
            return torch.from_numpy(self.graphs.encode(audio, levels))
        whole = audio.shape[-1] // self.graphs.hop_length * self.graphs.hop_length
        parts = []
        if whole:
            parts.append(torch.from_numpy(self.stream.encode(audio[..., :whole], levels)))
        if whole < audio.shape[-1]:
            parts.append(self._partial(wav[..., whole:], levels))
        return torch.cat(parts, -1)

    def _partial(self, wav, levels: int):
        """The last, partial chunk of a stream, on the model's layers from the stream's state."""
        import torch

        from codec.nn import load_state_tensors, state_tensors, streaming

        spec = self.graphs.manifest["graphs"]["encoder_step"]["state"]
        arrays = self.stream.state["encoder_step"]
        encoder = self.model.encoder
        with streaming(encoder, self.stream.batch_size):
            names = set(state_tensors(encoder))  # the graph's names less "encoder."
            tensors = {
                e["name"].removeprefix("encoder."): torch.from_numpy(np.array(a))
                for e, a in zip(spec, arrays)
            }
            load_state_tensors(encoder, {k: v for k, v in tensors.items() if k in names})
            latents = encoder(wav.float())
        _, codes, _ = self.model._quantize(latents.float().transpose(1, 2), num_levels=levels)
        return codes[:, :, :levels].cpu()

    def decode_frames(self, codes):
        import torch

        array = codes.detach().cpu().numpy()
        if self.stream is None:
            return torch.from_numpy(self.graphs.decode(array))
        return torch.from_numpy(self.stream.decode(array))

    @contextlib.contextmanager
    def streaming(self, batch_size: int):
        if self.stream is not None:
            raise RuntimeError("already streaming")
        self.stream = self.graphs.stream(batch_size)
        try:
            yield self.model
        finally:
            self.stream = None


def attach(model, graphs: OnnxGraphs):
    """Run `model`'s encode, decode and streaming through `graphs` (exported from it)."""
    model.runtime = OnnxRuntime(model, graphs)
    return model
