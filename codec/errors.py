"""Errors other modules share, and one-line messages from exceptions whose text can run over
several lines, be empty, or not say which file it is about."""

from __future__ import annotations

from pathlib import Path


def first_line(err: BaseException | str, limit: int | None = None) -> str:
    """The first line of an error's message (Hydra, torch and pickle append hints and stack
    notes on later lines), or the error type's name when the message is empty; at most `limit`
    characters when given."""
    text = (str(err).strip().splitlines() or [type(err).__name__])[0].strip()
    return text if limit is None else text[:limit]


class FileError(ValueError):
    """A file that cannot be used. Made by `in_file`, the message starts with the file's path
    and `path` holds it; made from a message alone (bytes that came from no file), `path` is
    None."""

    path: Path | None = None

    @classmethod
    def in_file(cls, path, problem: BaseException | str) -> FileError:
        """The error `problem` (an error or a message) about the file at `path`."""
        error = cls(f"{path}: {problem}")
        error.path = Path(path)
        return error


def about(path, err: BaseException) -> str:
    """One line on `err` that names `path`: its message where the error names its own file,
    else the message after `path`."""
    if isinstance(err, FileError) and err.path is not None:
        return first_line(err)
    return f"{path}: {first_line(err)}"


class CheckpointError(FileError):
    """A checkpoint that cannot be used (a training checkpoint, or another codec's file to
    import); the message names the file and the problem."""
