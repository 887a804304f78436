"""Fetching known checkpoints, with no network: a loopback HTTP server or file:// URLs stand in
for the publishers."""

import hashlib
import http.server
import re
import threading

import pytest

from codec.models import download
from codec.models.download import (
    KNOWN_CHECKPOINTS,
    DownloadError,
    KnownCheckpoint,
    UnknownCheckpointError,
    fetch_checkpoint,
    is_known_name,
)

PAYLOAD = bytes(range(256)) * 5000  # 1.28 MB: more than one read chunk
OTHER_PAYLOAD = PAYLOAD[::-1]


class Publisher:
    """A loopback HTTP server in a thread: serves `files` by path, counts the requests, and
    cuts /partial.th short (it promises more bytes than it sends, then closes)."""

    def __init__(self):
        self.files = {"/model.th": PAYLOAD}
        self.requests = 0
        publisher = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10  # a stuck client cannot hold the server thread for long

            def do_GET(self):
                publisher.requests += 1
                if self.path == "/partial.th":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(PAYLOAD)))
                    self.end_headers()
                    self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
                    self.close_connection = True
                    return
                body = publisher.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        # stops itself even if a test never returns to the fixture's teardown
        self.deadline = threading.Timer(120, self.server.shutdown)
        self.deadline.daemon = True

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self):
        self.thread.start()
        self.deadline.start()
        return self

    def __exit__(self, *exc):
        self.deadline.cancel()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def publisher():
    with Publisher() as running:
        yield running


@pytest.fixture
def register(monkeypatch):
    """register(name, url, sha256_prefix) adds a checkpoint to a copy of the registry."""
    registry = dict(KNOWN_CHECKPOINTS)
    monkeypatch.setattr(download, "KNOWN_CHECKPOINTS", registry)

    def add(name, url, sha256_prefix=None):
        registry[name] = KnownCheckpoint(url, sha256_prefix, f"{name}.th")

    return add


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_files(folder):
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_download_then_cache_hit(publisher, register, tmp_path, capsys):
    register("test_model", publisher.url("/model.th"), sha256(PAYLOAD)[:8])
    path = fetch_checkpoint("test_model", tmp_path / "cache")
    assert path == tmp_path / "cache" / "test_model.th"
    assert path.read_bytes() == PAYLOAD
    assert publisher.requests == 1
    assert cache_files(tmp_path / "cache") == ["test_model.th", "test_model.th.sha256"]
    assert (
        tmp_path / "cache/test_model.th.sha256"
    ).read_text() == f"{sha256(PAYLOAD)}  test_model.th\n"
    assert sha256(PAYLOAD) in capsys.readouterr().err

    assert fetch_checkpoint("test_model", tmp_path / "cache") == path
    assert publisher.requests == 1  # served from the cache


def test_cache_folder_from_the_environment(publisher, register, tmp_path, monkeypatch):
    register("test_model", publisher.url("/model.th"), sha256(PAYLOAD)[:8])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("CODEC_CACHE", str(tmp_path / "codec_cache"))
    assert fetch_checkpoint("test_model") == tmp_path / "codec_cache" / "test_model.th"
    monkeypatch.delenv("CODEC_CACHE")
    assert download.default_cache_dir() == tmp_path / "xdg" / "codec"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert download.default_cache_dir() == tmp_path / "home" / ".cache" / "codec"


def test_wrong_hash_prefix_is_rejected_and_nothing_cached(publisher, register, tmp_path):
    register("test_model", publisher.url("/model.th"), "0123abcd")
    with pytest.raises(DownloadError) as caught:
        fetch_checkpoint("test_model", tmp_path / "cache")
    message = str(caught.value)
    assert "sha256 mismatch" in message and "test_model.th" in message
    assert f"expected 0123abcd, got {sha256(PAYLOAD)}" in message
    assert "\n" not in message
    assert cache_files(tmp_path / "cache") == []


def test_unreachable_server_gives_one_line(register, tmp_path):
    register("encodec_24khz", "http://127.0.0.1:1/encodec_24khz.th", "d7cc33bc")
    with pytest.raises(DownloadError) as caught:
        fetch_checkpoint("encodec_24khz", tmp_path / "cache")
    message = str(caught.value)
    assert re.fullmatch(
        r"cannot download encodec_24khz from http://127\.0\.0\.1:1/encodec_24khz\.th: "
        r"no network \(.+\); download it by hand and run `codec import PATH`",
        message,
    )
    assert cache_files(tmp_path / "cache") == []


def test_http_error_is_named(publisher, register, tmp_path):
    register("test_model", publisher.url("/missing.th"), "d7cc33bc")
    with pytest.raises(DownloadError, match=r"from http://127\.0\.0\.1:\d+/missing\.th: HTTP 404"):
        fetch_checkpoint("test_model", tmp_path / "cache")
    assert cache_files(tmp_path / "cache") == []


def test_partial_download_leaves_nothing(publisher, register, tmp_path):
    register("unpinned", publisher.url("/partial.th"))  # no hash: only the length can tell
    with pytest.raises(DownloadError, match=f"ended after .* of {len(PAYLOAD)} bytes") as caught:
        fetch_checkpoint("unpinned", tmp_path / "cache")
    assert "\n" not in str(caught.value)
    assert cache_files(tmp_path / "cache") == []


def test_unpinned_checkpoint_is_pinned_by_its_first_download(publisher, register, tmp_path, capsys):
    register("dac_like", publisher.url("/model.th"))
    cache = tmp_path / "cache"
    path = fetch_checkpoint("dac_like", cache)
    assert f"sha256 of dac_like: {sha256(PAYLOAD)}" in capsys.readouterr().err
    assert fetch_checkpoint("dac_like", cache) == path and publisher.requests == 1

    path.write_bytes(b"corrupted")  # a damaged cached file is fetched again
    assert fetch_checkpoint("dac_like", cache).read_bytes() == PAYLOAD
    assert publisher.requests == 2

    path.unlink()  # the publisher's file changed: refused against the recorded hash
    publisher.files["/model.th"] = OTHER_PAYLOAD
    with pytest.raises(
        DownloadError, match=f"expected {sha256(PAYLOAD)}, got {sha256(OTHER_PAYLOAD)}"
    ):
        fetch_checkpoint("dac_like", cache)
    assert cache_files(cache) == ["dac_like.th.sha256"]


def test_unverifiable_cached_file_is_replaced(publisher, register, tmp_path):
    # an unpinned file in the cache without its record (a run cut off before writing it)
    register("dac_like", publisher.url("/model.th"))
    (tmp_path / "dac_like.th").write_bytes(b"whatever was there")
    assert fetch_checkpoint("dac_like", tmp_path).read_bytes() == PAYLOAD
    assert publisher.requests == 1


def test_wrong_cached_file_is_removed_even_when_offline(register, tmp_path):
    register("test_model", "http://127.0.0.1:1/model.th", sha256(PAYLOAD)[:8])
    (tmp_path / "test_model.th").write_bytes(b"not the model")
    with pytest.raises(DownloadError, match="no network"):
        fetch_checkpoint("test_model", tmp_path)
    assert cache_files(tmp_path) == []


def test_file_urls_work(register, tmp_path):
    source = tmp_path / "published.th"
    source.write_bytes(PAYLOAD)
    register("local", source.as_uri(), sha256(PAYLOAD)[:8])
    assert fetch_checkpoint("local", tmp_path / "cache").read_bytes() == PAYLOAD
    register("gone", (tmp_path / "gone.th").as_uri(), "d7cc33bc")
    with pytest.raises(DownloadError, match="cannot download gone"):
        fetch_checkpoint("gone", tmp_path / "cache")


def test_unknown_name_lists_the_known_ones(tmp_path):
    with pytest.raises(UnknownCheckpointError) as caught:
        fetch_checkpoint("encodec_96khz", tmp_path)
    message = str(caught.value)
    assert "encodec_96khz" in message
    assert all(name in message for name in KNOWN_CHECKPOINTS)
    assert isinstance(caught.value, DownloadError)


def test_is_known_name():
    assert is_known_name("encodec_24khz") and is_known_name("dac_44khz")
    assert not is_known_name("encodec_24khz.th")
    assert not is_known_name("/tmp/encodec_24khz-d7cc33bc.th")
    assert not is_known_name(None)


def test_registry_matches_the_publishers():
    assert {"encodec_24khz", "encodec_48khz", "dac_16khz", "dac_24khz", "dac_44khz"} <= set(
        KNOWN_CHECKPOINTS
    )
    for name, entry in KNOWN_CHECKPOINTS.items():
        assert entry.url.startswith("https://"), name
        if name.startswith("encodec_"):  # EnCodec names its files NAME-<sha256 prefix>.th
            assert entry.url.rsplit("/", 1)[1] == f"{name}-{entry.sha256_prefix}.th"
            assert re.fullmatch(r"[0-9a-f]{8}", entry.sha256_prefix)
        else:
            assert entry.sha256_prefix is None  # DAC publishes no hashes
        assert entry.filename.startswith(name)
