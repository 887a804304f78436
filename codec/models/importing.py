"""`codec import`: other codecs' checkpoints -> model folders of this toolkit.

    import_checkpoint("encodec_24khz-d7cc33bc.th")   # the original EnCodec file
    import_checkpoint("path/to/hf-encodec-folder")    # transformers' EncodecModel folder
    import_checkpoint("path/to/hf-dac-folder")        # transformers' DacModel folder
    import_checkpoint("encodec_24khz")                # a known name: downloaded when online
    import_checkpoint("weights_16khz.pth")            # a DAC file ({"state_dict", "metadata"})
    import_checkpoint("dac_16khz")                    # dac_16khz, dac_24khz, dac_44khz

The format is detected from the files (`fmt` overrides): a folder is Hugging Face DAC when its
config.json says model_type "dac", else Hugging Face EnCodec; a
PyTorch file named dac* or encodec* is that, any other is told by its contents (DAC's
{"state_dict", "metadata"} or a plain state dict). Nothing is written unless the whole
import succeeded, and the folder appears by one rename.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from codec.models.checkpoints import CheckpointError
from codec.models.codec import Codec

FORMATS = ("encodec", "encodec-hf", "dac", "dac-hf")
TORCH_SUFFIXES = (".th", ".pt", ".pth", ".ckpt", ".bin")


def sniff_format(path: Path):
    """(format, the file's contents or None): a folder is a Hugging Face EnCodec folder; a
    PyTorch file named dac* or encodec* is that; any other is read once, and DAC's
    {"state_dict", "metadata"} is "dac", anything else "encodec"."""
    from codec.models.checkpoints import read_torch_file
    from codec.models.dac import is_dac_checkpoint, is_hf_dac_folder

    if path.is_dir():
        if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
            return ("dac-hf" if is_hf_dac_folder(path) else "encodec-hf"), None
        raise CheckpointError(f"{path}: a folder without config.json and model.safetensors")
    if path.suffix not in TORCH_SUFFIXES:
        raise CheckpointError(
            f"{path}: cannot tell its format from the name; pass --from ({', '.join(FORMATS)})"
        )
    if path.name.startswith(("dac", "encodec")):
        return ("dac" if path.name.startswith("dac") else "encodec"), None
    data = read_torch_file(path)
    return ("dac" if is_dac_checkpoint(data) else "encodec"), data


def import_checkpoint(source, fmt: str | None = None, kind: str | None = None) -> Codec:
    """A checkpoint file, folder or known name -> Codec with its own architecture."""
    from codec.models import download
    from codec.models.dac import import_dac
    from codec.models.encodec import import_encodec

    path = Path(source)
    if not path.exists() and download.is_known_name(str(source)):
        kind = kind or str(source)
        fmt = fmt or ("dac" if kind.startswith("dac") else "encodec")
        try:
            path = download.fetch_checkpoint(str(source))
        except download.DownloadError as err:
            raise CheckpointError(str(err)) from None
    elif not path.exists():
        raise CheckpointError(
            f"{source}: no such file or folder, and not a known model name "
            f"({', '.join(download.KNOWN_CHECKPOINTS)})"
        )
    data = None
    if fmt is None:
        fmt, data = sniff_format(path)  # a file read to tell its format is not read again
    if fmt not in FORMATS:
        raise CheckpointError(f"--from must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt in ("dac", "dac-hf"):
        return import_dac(path, kind=kind, data=data)
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
