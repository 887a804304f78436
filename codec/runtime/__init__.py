"""Inference outside autograd: a Codec exported to ONNX graphs (whole files of any length, and
one-frame streaming steps with the state in and out) and run by onnxruntime.

    from codec.runtime import export_model, OnnxGraphs, use_onnx
    export_model(model, "out/")          # codec export MODEL -o out/
    graphs = OnnxGraphs.load("out/")     # numpy in and out; no torch needed to run them
    use_onnx(model)                      # model.encode/decode/streaming run on the graphs,
                                         # exported once into the cache (--runtime onnx)

Needs the `onnx` extra (onnx, onnxscript, onnxruntime); running graphs needs onnxruntime only.
"""

from __future__ import annotations

from pathlib import Path

RUNTIMES = ("torch", "onnx")


def export_model(*args, **kwargs):
    from codec.runtime.export import export_model as export

    return export(*args, **kwargs)


def cache_folder(model) -> Path:
    """Where `use_onnx` keeps a model's graphs: CACHE/onnx/MODEL_ID-WEIGHTS_HASH."""
    from codec.models.download import default_cache_dir

    return default_cache_dir() / "onnx" / f"{model.model_id}-{model.model_hash}"


def use_onnx(model, folder=None, threads: int | None = 1, log=None):
    """Run `model`'s encode, decode and streaming on its ONNX graphs: those in `folder`
    (default: the cache, exported there first if they are not yet). Returns the model."""
    from codec.runtime.export import REVISION
    from codec.runtime.onnx import OnnxGraphs, OnnxModelError, attach

    if folder is None:
        folder = cache_folder(model)
        try:
            graphs = OnnxGraphs.load(folder, threads)
            graphs.check_model(model.model_id, model.model_hash)
            if graphs.manifest.get("revision", 1) < REVISION:
                raise OnnxModelError(f"{folder}: exported by an older codec")
        except OnnxModelError:
            if log is not None:
                log(f"exporting {model.model_id} to ONNX in {folder} (once)")
            export_model(model, folder, force=True)
            graphs = OnnxGraphs.load(folder, threads)
    else:
        graphs = OnnxGraphs.load(folder, threads)
    return attach(model, graphs)


def __getattr__(name):
    if name == "OnnxGraphs":
        from codec.runtime.onnx import OnnxGraphs

        return OnnxGraphs
    raise AttributeError(name)
