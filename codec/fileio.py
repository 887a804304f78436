"""Atomic file writing: a temp file in the target's folder, fsync, then rename over the target,
so a reader sees the old file or the new one, never half of one. Bounded reading of regular
files from strangers. Corpus links."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

# Extensions taken as audio when a folder is searched (any format soundfile reads).
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf"}


def atomic_write(path, write: Callable[[str], object]) -> Path:
    """Call `write(temp_path)` to produce the file, then move it into place at `path`.

    On any failure the temp file is removed and an existing `path` is left untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where a folder should be: say so, not "File exists"
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.errno is not None and err.filename in (None, tmp):  # name the target instead
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def read_regular_file(path, max_bytes: int, error: type[Exception] = ValueError) -> bytes:
    """The bytes of `path` if it is a regular file of at most `max_bytes`; else `error` saying
    why. Opening a FIFO does not wait for a writer (O_NONBLOCK)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise error("not a regular file")
        if info.st_size > max_bytes:
            raise error(f"{info.st_size} bytes, over the limit of {max_bytes}")
        return handle.read(info.st_size)


def read_file_list(path) -> list[str]:
    """The non-blank lines of a list of paths (one a line), stripped; ValueError
    "PATH: cannot read the file list (why)" when it cannot be read as text."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        why = getattr(err, "strerror", None) or err
        raise ValueError(f"{path}: cannot read the file list ({why})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def link_into(target: Path, link: Path) -> None:
    """Make `link` (and its folders) a symlink to `target` unless it is one already; a folder or
    link that cannot be made raises ValueError naming the link, the target and the reason."""
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(target.resolve())
    except OSError as err:
        raise ValueError(f"{link}: cannot link {target} there ({err.strerror})") from err
