"""Models by short name: a folder path, a model shipped in the package (codec/pretrained/), or
one imported into the cache (`codec import encodec_24khz` -> CACHE/models/encodec_24khz).

The cache is $CODEC_CACHE, else $XDG_CACHE_HOME/codec, else ~/.cache/codec.
"""

from __future__ import annotations

from pathlib import Path

from codec.models.download import default_cache_dir

PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"


def models_dir() -> Path:
    return default_cache_dir() / "models"


def is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file()


def resolve_model(text) -> Path:
    """A model folder for `text`: an existing folder, else a shipped or imported model of that
    name. Raises FileNotFoundError with the places looked at."""
    path = Path(text)
    if path.is_dir() or len(path.parts) > 1:
        return path
    for folder in (PRETRAINED / path.name, models_dir() / path.name):
        if is_model_folder(folder):
            return folder
    raise FileNotFoundError(
        f"{text}: no model folder, shipped model or imported model of that name "
        f"(import one with `codec import {text}`, or pass a folder)"
    )
