"""`codec import`: other codecs' checkpoints -> model folders of this toolkit.

    import_checkpoint("encodec_24khz-d7cc33bc.th")   # the original EnCodec file
    import_checkpoint("path/to/hf-encodec-folder")    # transformers' EncodecModel folder
    import_checkpoint("encodec_24khz")                # a known name: downloaded when online

The format is detected from the files (`fmt` overrides); nothing is written unless the whole
import succeeded, and the folder appears by one rename.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from codec.models.checkpoints import CheckpointError
from codec.models.codec import Codec

FORMATS = ("encodec", "encodec-hf")


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
            return "encodec-hf"
        raise CheckpointError(f"{path}: a folder without config.json and model.safetensors")
    if path.suffix in (".th", ".pt", ".pth", ".ckpt", ".bin"):
        return "encodec"
    raise CheckpointError(
        f"{path}: cannot tell its format from the name; pass --from ({', '.join(FORMATS)})"
    )


def import_checkpoint(source, fmt: str | None = None, kind: str | None = None) -> Codec:
    """A checkpoint file, folder or known name -> Codec with its own architecture."""
    from codec.models import download
    from codec.models.encodec import import_encodec

    path = Path(source)
    if not path.exists() and download.is_known_name(str(source)):
        if not str(source).startswith("encodec"):
            raise CheckpointError(f"{source}: importing this model family is not supported yet")
        kind = kind or str(source)
        try:
            path = download.fetch_checkpoint(str(source))
        except download.DownloadError as err:
            raise CheckpointError(str(err)) from None
    elif not path.exists():
        raise CheckpointError(
            f"{source}: no such file or folder, and not a known model name "
            f"({', '.join(download.KNOWN_CHECKPOINTS)})"
        )
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise CheckpointError(f"--from must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return import_encodec(path, kind=kind)


def save_new_folder(model: Codec, output: Path, force: bool = False) -> Path:
    """Write `model` to `output` through a temporary sibling folder renamed into place, so
    `output` is either untouched or whole. An existing model folder is replaced only with
    `force`."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"{output}: exists and is not a folder")
    if output.exists() and any(output.iterdir()) and not force:
        raise FileExistsError(f"{output}: exists (use --force to replace it)")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        model.save_pretrained(staging)
        if output.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old.", dir=output.parent))
            output.rename(old / "model")
            staging.rename(output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output
