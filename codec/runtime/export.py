"""`codec export MODEL -o DIR`: a Codec as ONNX graphs, run by onnxruntime (codec.runtime.onnx).

    export_model(model, "out/", levels=None)   # -> out/ with manifest.json and the graphs

writes, with `torch.onnx.export` (torch.export underneath, dynamic shapes):

    encoder.onnx        audio (batch, channels, samples) float32 -> codes (batch, groups,
                        levels, frames) int64, frames = ceil(samples / hop), any length
    decoder.onnx        codes (batch, groups, L, frames), 1 <= L <= levels, -1 for a dropped
                        level -> audio (batch, channels, frames * hop)
    encoder_step.onnx   causal models, one frame per call: (audio (batch, channels, hop),
    decoder_step.onnx   *state) -> (codes (batch, groups, levels, 1), *new state) and (codes
                        (batch, groups, levels, 1), -1 for a level not coded, *state) ->
                        (audio (batch, channels, hop), *new state)
    manifest.json       what the model is (id, weights hash, rates, code shape), each graph's
                        file, sha256 and input and output names, and the state tensors' names,
                        shapes (batch first) and dtypes with their fresh values (zeros, or
                        True for a reflect-padded conv's first-chunk flag)

The nearest-code search and the code lookup are inside the graphs (codec.quantize.traced).
In the step graphs, layers that see one kernel window a frame run as MatMuls
(codec.runtime.lowering).
A segmented model (EnCodec 48 kHz) exports its per-segment encoder and decoder; the runtime
cuts, scales and overlap-adds the segments around them, as the Codec does. Non-causal models
have no step graphs. The folder appears by one rename when everything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from codec.models.codec import Codec
from codec.nn import fold_weight_norm, state_tensors, streaming
from codec.runtime.graphs import DecoderGraph, EncoderGraph, StepGraph

FORMAT, VERSION = "codec-onnx", 1
# what the graphs are built of, within one format version: 1 the step graphs as torch.onnx
# exports them, 2 with their one-window layers as MatMuls. The cache (codec.runtime.use_onnx)
# exports anew below REVISION.
UNLOWERED_REVISION, REVISION = 1, 2


class ExportError(ValueError):
    """A model that could not be exported; the message names it and the first problem."""


MANIFEST = "manifest.json"
OPSET = 18
MAX_SAMPLES = 1 << 31


def _lstm_layer_onnx(x, h, c, w, r, bias):
    """codec::lstm_layer as ONNX's LSTM (same gate order, one direction; x batch first)."""
    from onnxscript import opset18 as op

    hidden = r.shape[1]
    y, y_h, y_c = op.LSTM(
        op.Transpose(x, perm=[1, 0, 2]),
        op.Unsqueeze(w, [0]),
        op.Unsqueeze(r, [0]),
        op.Unsqueeze(bias, [0]),
        None,
        op.Unsqueeze(h, [0]),
        op.Unsqueeze(c, [0]),
        hidden_size=hidden,
    )
    outputs = op.Transpose(op.Squeeze(y, [1]), perm=[1, 0, 2])
    return outputs, op.Squeeze(y_h, [0]), op.Squeeze(y_c, [0])


def _translations() -> dict:
    import codec.nn.export_ops  # noqa: F401  (registers codec::lstm_layer)

    return {torch.ops.codec.lstm_layer.default: _lstm_layer_onnx}


@contextlib.contextmanager
def _exporting():
    """Sizes of 1 (one frame, one item) stay symbolic instead of being specialised, and the
    exporter's progress lines and warnings stay quiet."""
    import torch.fx.experimental._config as fx_config

    with (
        torch.no_grad(),
        fx_config.patch(backed_size_oblivious=True),
        warnings.catch_warnings(),
        contextlib.redirect_stdout(None),
        contextlib.redirect_stderr(None),
    ):
        warnings.simplefilter("ignore")
        yield


def _export(module, args, dynamic_shapes, names, path: Path, lower: bool = False) -> None:
    """torch.export (non-strict, no fallback: a graph that would fix a size fails here) and
    the ONNX translation of its program, with `lower` its one-window layers as MatMuls
    (codec.runtime.lowering) before it is written."""
    inputs, outputs = names
    with _exporting():
        program = torch.export.export(module, args, dynamic_shapes=dynamic_shapes, strict=False)
        onnx_program = torch.onnx.export(
            program,
            dynamo=True,
            input_names=inputs,
            output_names=outputs,
            opset_version=OPSET,
            custom_translation_table=_translations(),
            optimize=True,
            verbose=False,
        )
        if lower:
            import onnx

            from codec.runtime.lowering import lower_step_graph

            onnx.save(lower_step_graph(onnx_program.model_proto)[0], str(path))
        else:
            onnx_program.save(str(path))


def prepared(model: Codec) -> Codec:
    """A plain copy of `model` for export, built anew from its config and weights (a deep copy
    would share weight norm's parametrized classes, whose folding would reach the original):
    eval mode, no gradients, weight norm folded, float32, on the CPU."""
    state = {
        k: v.detach().cpu().float() if v.is_floating_point() else v.cpu()
        for k, v in model.state_dict().items()
    }
    plain = Codec(model.config)
    folded = not any(".parametrizations." in key for key in state)
    if folded:  # a model loaded for inference: fold the copy's weight norm first
        fold_weight_norm(plain)
    plain.load_state_dict(state)
    return fold_weight_norm(plain.eval().requires_grad_(False))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _state_spec(graph) -> list[dict]:
    """The state tensors of `graph` while it streams a batch of one: name, shape without the
    batch, dtype and fresh value."""
    return [
        {
            "name": name,
            "shape": list(tensor.shape[1:]),
            "dtype": "bool" if tensor.dtype == torch.bool else "float32",
            "fresh": 1 if tensor.dtype == torch.bool else 0,
        }
        for name, tensor in state_tensors(graph).items()
    ]


def _export_step(graph, kind: str, model: Codec, path: Path, lower: bool) -> dict:
    """The one-frame step graph of `graph` (kind "encoder" or "decoder"): a fixed frame, so
    that every shape in it is a constant but the batch; returns its state spec."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    with streaming(graph, batch_size=1):
        state = state_tensors(graph)
        spec = _state_spec(graph)
        names = list(state)
        if kind == "encoder":
            x = torch.zeros(1, model.channels, model.hop_length)
            x_shape = {0: batch}
            io = ("audio", "codes")
        else:  # every level: a stream of fewer passes -1 (dropped) for the rest
            x = torch.zeros(1, model.groups, model.levels, 1, dtype=torch.long)
            x_shape = {0: batch}
            io = ("codes", "audio")
        states = [f"state.{i}" for i in range(len(names))]
        shapes = (x_shape, tuple({0: batch} for _ in names))  # forward(x, *state)
        _export(
            StepGraph(graph, names),
            (x, *state.values()),
            shapes,
            ([io[0], *states], [io[1], *(f"new_{s}" for s in states)]),
            path,
            lower,
        )
    for i, entry in enumerate(spec):
        entry["input"], entry["output"] = f"state.{i}", f"new_state.{i}"
    return {"state": spec}


def export_model(
    model: Codec, directory, levels: int | None = None, force: bool = False, lower: bool = True
) -> Path:
    """Write `model`'s graphs and manifest to the folder `directory` (see the module doc);
    the encoder codes `levels` levels (default all). An existing folder is replaced only
    with `force`. `lower=False` leaves the step graphs' layers as exported (what
    profile_steps.py compares the lowered steps against)."""
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not force:
        raise FileExistsError(f"{directory}: exists (use --force to replace it)")
    levels = model.levels_for(levels=levels)
    plain = prepared(model)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        try:
            graphs = _export_all(plain, levels, staging, lower)
        except (RuntimeError, ValueError, TypeError, AssertionError) as err:
            line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ExportError(f"{model.model_id}: ONNX export failed ({line})") from err
        manifest = _manifest(model, levels, graphs, REVISION if lower else UNLOWERED_REVISION)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; give what mkdir would
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def _export_all(model: Codec, levels: int, folder: Path, lower: bool) -> dict:
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    samples = torch.export.Dim("samples", min=1, max=MAX_SAMPLES)
    frames = torch.export.Dim("frames", min=1, max=MAX_SAMPLES // model.hop_length)
    code_levels = torch.export.Dim("levels", min=1, max=model.levels)
    encoder, decoder = EncoderGraph(model, levels), DecoderGraph(model)
    graphs = {"encoder": {}, "decoder": {}}
    audio = torch.zeros(1, model.channels, 3 * model.hop_length + 1)
    _export(
        encoder,
        (audio,),
        ({0: batch, 2: samples},),
        (["audio"], ["codes"]),
        folder / "encoder.onnx",
    )
    codes = torch.zeros(1, model.groups, model.levels, 3, dtype=torch.long)
    _export(
        decoder,
        (codes,),
        ({0: batch, 2: code_levels, 3: frames},),
        (["codes"], ["audio"]),
        folder / "decoder.onnx",
    )
    if model.causal and model.segmentation is None:
        graphs["encoder_step"] = _export_step(
            encoder, "encoder", model, folder / "encoder_step.onnx", lower
        )
        graphs["decoder_step"] = _export_step(
            decoder, "decoder", model, folder / "decoder_step.onnx", lower
        )
    for name, entry in graphs.items():
        entry["file"] = f"{name}.onnx"
        entry["sha256"] = _sha256(folder / entry["file"])
    return graphs


def _manifest(model: Codec, levels: int, graphs: dict, revision: int) -> dict:
    segment = model.config.segment_options
    return {
        "format": FORMAT,
        "version": VERSION,
        "revision": revision,
        "model_id": model.model_id,
        "weights_hash": model.model_hash,
        "sample_rate": model.sample_rate,
        "channels": model.channels,
        "hop_length": model.hop_length,
        "frame_rate": model.frame_rate,
        "groups": model.groups,
        "levels": model.levels,
        "encoder_levels": levels,
        "codebook_size": model.codebook_size,
        "causal": model.causal,
        "pad_mode": model.encoder.pad_mode,
        "loudness_lufs": model.config.loudness_lufs,
        "segment": None
        if segment is None
        else {
            "length": model.segmentation.length,
            "stride": model.segmentation.stride,
            "normalize": bool(segment.normalize),
        },
        "graphs": graphs,
    }
