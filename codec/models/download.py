"""Fetching known pretrained checkpoints (EnCodec, DAC) into a local cache, for users online.

`fetch_checkpoint("encodec_24khz")` returns the path of the cached file, downloading it first
when it is missing or does not match its hash. A download streams into a temp file in the cache
folder, hashing as it goes, and is renamed into place only when complete and verified, so the
cache never holds a partial or wrong file.

Hashes: EnCodec publishes the first 8 hex digits of each file's SHA-256 in its name, and those
are checked. DAC publishes none: the SHA-256 of the first download is recorded and printed, and
later uses (and later downloads, should the file go missing) must match it. Every download's
full SHA-256 is recorded next to the file as `NAME.sha256`, in `sha256sum` format.

Cache folder: the `cache_dir` argument, else $CODEC_CACHE, else $XDG_CACHE_HOME/codec, else
~/.cache/codec.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from codec.errors import first_line
from codec.fileio import atomic_write, atomic_write_bytes

TIMEOUT_S = 30  # per connect or read; a stalled server fails instead of hanging
CHUNK_BYTES = 1 << 20
MAX_DOWNLOAD_BYTES = 4 << 30  # the largest known checkpoint is under 400 MB
HASH_SUFFIX = ".sha256"
_HEX = re.compile(r"[0-9a-f]{64}")


class DownloadError(RuntimeError):
    """A checkpoint could not be fetched or did not verify; one line saying why."""


class UnknownCheckpointError(DownloadError):
    """A name that is not in KNOWN_CHECKPOINTS."""


@dataclass(frozen=True)
class KnownCheckpoint:
    url: str  # where the publisher serves it
    sha256_prefix: str | None  # hex digits of its SHA-256 the publisher pins; None: none pinned
    filename: str  # its name in the cache folder


KNOWN_CHECKPOINTS: dict[str, KnownCheckpoint] = {
    "encodec_24khz": KnownCheckpoint(
        "https://dl.fbaipublicfiles.com/encodec/v0/encodec_24khz-d7cc33bc.th",
        "d7cc33bc",
        "encodec_24khz-d7cc33bc.th",
    ),
    "encodec_48khz": KnownCheckpoint(
        "https://dl.fbaipublicfiles.com/encodec/v0/encodec_48khz-7e698e3e.th",
        "7e698e3e",
        "encodec_48khz-7e698e3e.th",
    ),
    # descript-audio-codec's dac/utils/__init__.py: the latest 8 kbps release of each rate.
    "dac_16khz": KnownCheckpoint(
        "https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.5/weights_16khz.pth",
        None,
        "dac_16khz.pth",
    ),
    "dac_24khz": KnownCheckpoint(
        "https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.4/weights_24khz.pth",
        None,
        "dac_24khz.pth",
    ),
    "dac_44khz": KnownCheckpoint(
        "https://github.com/descriptinc/descript-audio-codec/releases/download/0.0.1/weights.pth",
        None,
        "dac_44khz.pth",
    ),
}


def is_known_name(text) -> bool:
    """Whether `text` names a checkpoint fetch_checkpoint knows (rather than a file path)."""
    return isinstance(text, str) and text in KNOWN_CHECKPOINTS


def default_cache_dir() -> Path:
    """$CODEC_CACHE, else $XDG_CACHE_HOME/codec, else ~/.cache/codec."""
    if os.environ.get("CODEC_CACHE"):
        return Path(os.environ["CODEC_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "codec"
    return Path.home() / ".cache" / "codec"


def fetch_checkpoint(name: str, cache_dir=None) -> Path:
    """The path of checkpoint `name` in the cache, downloaded first unless it is there and its
    SHA-256 checks out. Progress and the recorded hash are printed to stderr.

    Raises UnknownCheckpointError for a name not in KNOWN_CHECKPOINTS (listing them), and
    DownloadError when offline, on an HTTP error, a short download or a hash mismatch; after
    an error nothing new is left in the cache."""
    if not is_known_name(name):
        raise UnknownCheckpointError(
            f"unknown checkpoint {str(name)[:80]!r}; known: {', '.join(KNOWN_CHECKPOINTS)}"
        )
    entry = KNOWN_CHECKPOINTS[name]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = folder / entry.filename
    record = folder / (entry.filename + HASH_SUFFIX)
    recorded = _read_record(record)

    if target.is_file():
        digest = _sha256_of_file(target)
        if _verified(digest, entry, recorded):
            if recorded is None:
                _write_record(record, digest, target)
            return target
        _say(f"{target} does not match its hash (sha256 {digest}); downloading it again")
        target.unlink()  # so that a failed download leaves no wrong file behind

    _say(f"downloading {name} from {entry.url} to {target}")
    try:
        digest = _download(name, entry, target, recorded)
    except OSError as err:  # the cache folder or temp file, not the network
        raise DownloadError(
            f"cannot download {name}: cannot write {target} ({err.strerror or err})"
        ) from None
    if recorded is None:
        _write_record(record, digest, target)
        _say(f"sha256 of {name}: {digest} (recorded in {record})")
    return target


def _verified(digest: str, entry: KnownCheckpoint, recorded: str | None) -> bool:
    """A file matches when it has the publisher's prefix (if pinned) and the recorded hash (if
    any). With neither there is nothing to check against: a DAC file without its record (say, a
    download interrupted before the record was written) is fetched again."""
    if entry.sha256_prefix is None and recorded is None:
        return False
    if entry.sha256_prefix is not None and not digest.startswith(entry.sha256_prefix.lower()):
        return False
    return recorded is None or digest == recorded


def _download(name: str, entry: KnownCheckpoint, target: Path, recorded: str | None) -> str:
    """Stream entry.url into `target` through a verified temp file; returns its SHA-256."""
    digest = hashlib.sha256()

    def write(tmp: str) -> None:
        received = 0
        with _open_url(name, entry.url) as response, open(tmp, "wb") as out:
            expected_bytes = _content_length(response)
            while chunk := _read_chunk(name, entry.url, response, received, expected_bytes):
                received += len(chunk)
                if received > MAX_DOWNLOAD_BYTES:
                    raise DownloadError(
                        f"cannot download {name} from {entry.url}: over {MAX_DOWNLOAD_BYTES} bytes"
                    )
                digest.update(chunk)
                out.write(chunk)
        if expected_bytes is not None and received != expected_bytes:
            raise _ended_early(name, entry.url, received, expected_bytes)
        got = digest.hexdigest()
        expected = recorded or entry.sha256_prefix
        if expected is not None and not _verified(got, entry, recorded):
            raise DownloadError(
                f"{target}: sha256 mismatch for {name} from {entry.url}: expected {expected}, "
                f"got {got}; nothing was cached"
                + ("" if recorded is None else f" (delete {target}{HASH_SUFFIX} to accept it)")
            )

    atomic_write(target, write)
    return digest.hexdigest()


def _open_url(name: str, url: str):
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        raise DownloadError(
            f"cannot download {name} from {url}: HTTP {err.code} {first_line(err.reason, 200)}"
        ) from None
    except urllib.error.URLError as err:
        if url.startswith("file:"):  # a local file the user pointed at: not a network problem
            raise DownloadError(
                f"cannot download {name} from {url}: {first_line(err.reason, 200)}"
            ) from None
        raise _offline(name, url, err.reason) from None
    except (OSError, http.client.HTTPException) as err:  # timeouts, resets, bad responses
        raise _offline(name, url, err) from None


def _read_chunk(name, url, response, received: int, expected_bytes: int | None) -> bytes:
    try:
        return response.read(CHUNK_BYTES)
    except http.client.IncompleteRead:
        raise _ended_early(name, url, received, expected_bytes) from None
    except (OSError, http.client.HTTPException) as err:
        raise _offline(name, url, err) from None


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None


def _offline(name: str, url: str, reason) -> DownloadError:
    return DownloadError(
        f"cannot download {name} from {url}: no network ({first_line(reason, 200)}); "
        f"download it by hand and run `codec import PATH`"
    )


def _ended_early(name: str, url: str, received: int, expected_bytes: int | None) -> DownloadError:
    of = "" if expected_bytes is None else f" of {expected_bytes}"
    return DownloadError(
        f"cannot download {name} from {url}: the connection ended after {received}{of} bytes; "
        f"nothing was cached, try again"
    )


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _read_record(record: Path) -> str | None:
    """The hex digest in a `NAME.sha256` record, or None when there is none (or it is not a
    record this module wrote)."""
    try:
        text = record.read_text(encoding="ascii", errors="replace")[:1000]
    except OSError:
        return None
    fields = text.split()
    return fields[0].lower() if fields and _HEX.fullmatch(fields[0].lower()) else None


def _write_record(record: Path, digest: str, target: Path) -> None:
    atomic_write_bytes(record, f"{digest}  {target.name}\n".encode())


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
