"""``vislab mnist download`` against a local HTTP server on 127.0.0.1 (no internet): success, mirror
fallback, corrupted files rejected without leftovers, retries on transient errors."""

import argparse
import gzip
import hashlib
import json
import os
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vislab.core.errors import VislabError
from vislab.mnist import download
from vislab.mnist.data import load_mnist
from vislab.mnist.download import PUBLISHED_MD5, download_mnist, run_download

NAMES = list(PUBLISHED_MD5)
TIMEOUT = 5.0


def small_mnist() -> dict[str, bytes]:
    """A tiny but valid MNIST set (20 train, 10 test images) as gzip bytes per file name."""
    rng = np.random.default_rng(0)
    files = {}
    for prefix, n in (("train", 20), ("t10k", 10)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            header = (0x0800 | arr.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
            files[f"{prefix}-{kind}-ubyte.gz"] = gzip.compress(header + arr.tobytes(), mtime=0)
    return files


def md5_table(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.md5(data).hexdigest() for name, data in files.items()}


class Mirror:
    """A local HTTP server with one behaviour per URL prefix:

    /good/NAME serves the file, /missing/ answers 404, /flaky/ answers 500 to the first two requests
    for each file, /down/ always answers 503, /busy/ and /slow/ answer 429 and 408 to the first request
    for each file, /short/ announces the full length but drops the connection half way the first time,
    /corrupt/ serves the file with bytes flipped in the middle.
    """

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.requests: Counter[str] = Counter()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                mirror.requests[self.path] += 1
                route, _, name = self.path.strip("/").partition("/")
                data = mirror.files.get(name)
                if data is None or route == "missing":
                    return self.send_error(404)
                if route == "flaky" and mirror.requests[self.path] <= 2:
                    return self.send_error(500)
                if route == "down":
                    return self.send_error(503)
                if route in ("busy", "slow") and mirror.requests[self.path] == 1:
                    return self.send_error(429 if route == "busy" else 408)
                if route == "corrupt":
                    mid = len(data) // 2
                    data = data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 8]) + data[mid + 8:]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if route == "short" and mirror.requests[self.path] == 1:
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(data)

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tiny():
    files = small_mnist()
    mirror = Mirror(files)
    yield mirror
    mirror.close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir())


def fetch(dest, mirrors, files, **kw):
    return download_mnist(dest, mirrors, checksums=md5_table(files), timeout=TIMEOUT, backoff=0.0,
                          show_progress=False, **kw)


def test_downloads_the_bundled_files_and_they_load(mnist_dir, tmp_path):
    files = {name: (mnist_dir / name).read_bytes() for name in NAMES}
    mirror = Mirror(files)
    table = tmp_path / "md5.json"
    table.write_text(json.dumps(md5_table(files)))
    dest = tmp_path / "dl"
    try:
        args = argparse.Namespace(dest=str(dest), mirror=[f"{mirror.url}/good/"], checksums=str(table),
                                  retries=1, timeout=TIMEOUT)
        assert run_download(args) == 0
        assert leftovers(dest) == sorted(NAMES)
        for name in NAMES:
            assert (dest / name).read_bytes() == files[name]
        x, y = load_mnist(dest, "train")
        assert x.shape == (60000, 28, 28) and torch.bincount(y)[0] == 5923
        # A second run finds everything verified and fetches nothing.
        before = sum(mirror.requests.values())
        assert run_download(args) == 0
        assert sum(mirror.requests.values()) == before
    finally:
        mirror.close()


def test_published_md5_table_rejects_recompressed_copies(tiny, tmp_path):
    """Without --checksums the published MD5s apply: other bytes are refused, nothing is kept."""
    with pytest.raises(VislabError, match="could not download train-images-idx3-ubyte.gz.*MD5"):
        download_mnist(tmp_path, [f"{tiny.url}/good/"], timeout=TIMEOUT, backoff=0.0, show_progress=False)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("first", ["missing", "refused"])
def test_falls_back_to_the_next_mirror(tiny, tmp_path, first):
    bad = f"{tiny.url}/missing/" if first == "missing" else closed_port_url()
    results = fetch(tmp_path, [bad, f"{tiny.url}/good"], tiny.files, retries=2)
    assert [src for _, src in results] == [f"{tiny.url}/good/{name}" for name in NAMES]
    assert leftovers(tmp_path) == sorted(NAMES)
    if first == "missing":  # a 404 is final: no retry on that mirror
        assert all(tiny.requests[f"/missing/{name}"] == 1 for name in NAMES)


def test_downloaded_files_get_the_ordinary_mode_not_the_temp_files_0600(tiny, tmp_path):
    old = os.umask(0o022)
    try:
        fetch(tmp_path, [f"{tiny.url}/good/"], tiny.files)
    finally:
        os.umask(old)
    assert {(tmp_path / name).stat().st_mode & 0o777 for name in NAMES} == {0o644}


def test_retries_transient_500_and_dropped_connections(tiny, tmp_path):
    results = fetch(tmp_path / "a", [f"{tiny.url}/flaky/"], tiny.files, retries=2)
    assert all(src.startswith(f"{tiny.url}/flaky/") for _, src in results)
    assert all(tiny.requests[f"/flaky/{name}"] == 3 for name in NAMES)
    fetch(tmp_path / "b", [f"{tiny.url}/short/"], tiny.files, retries=1)
    assert all(tiny.requests[f"/short/{name}"] == 2 for name in NAMES)
    assert leftovers(tmp_path / "b") == sorted(NAMES)


@pytest.mark.parametrize("route, status", [("busy", 429), ("slow", 408)])
def test_too_many_requests_and_request_timeout_are_retried(tiny, tmp_path, route, status):
    """429/408 are the server asking to come back later: retried on the same mirror, not refused."""
    results = fetch(tmp_path, [f"{tiny.url}/{route}/"], tiny.files, retries=1)
    assert [src for _, src in results] == [f"{tiny.url}/{route}/{name}" for name in NAMES]
    assert all(tiny.requests[f"/{route}/{name}"] == 2 for name in NAMES)
    assert leftovers(tmp_path) == sorted(NAMES)


def test_backoff_doubles_after_each_failure(tiny, tmp_path, monkeypatch):
    """Waits before retries 1, 2, 3 are b, 2b, 4b (sleep recorded, not slept); 3 retries tell 2**n from n + 1."""
    delays = []
    monkeypatch.setattr(download, "time", SimpleNamespace(sleep=delays.append))  # time is only used to sleep
    with pytest.raises(VislabError, match="HTTP 503.*4 attempts"):
        download_mnist(tmp_path, [f"{tiny.url}/down/"], checksums=md5_table(tiny.files), retries=3,
                       timeout=TIMEOUT, backoff=0.25, show_progress=False)
    assert delays == [0.25, 0.5, 1.0]  # the first file exhausts its retries and the download stops there


@pytest.mark.parametrize("kw", [{"retries": -1}, {"timeout": 0.0}, {"timeout": -5.0}])
def test_invalid_retries_or_timeout_is_an_error_before_any_request(tiny, tmp_path, kw):
    args = {"retries": 1, "timeout": TIMEOUT} | kw
    with pytest.raises(VislabError, match="--retries must be >= 0 and --timeout > 0"):
        download_mnist(tmp_path / "d", [f"{tiny.url}/good/"], checksums=md5_table(tiny.files), backoff=0.0,
                       show_progress=False, **args)
    assert sum(tiny.requests.values()) == 0 and not (tmp_path / "d").exists()


def test_too_few_retries_fails_listing_every_mirror_tried(tiny, tmp_path):
    refused = closed_port_url()
    with pytest.raises(VislabError) as info:
        fetch(tmp_path, [f"{tiny.url}/flaky/", refused], tiny.files, retries=1)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "HTTP 500" in message and "2 attempts" in message
    assert refused in message and "connection refused" in message and "\n" not in message
    assert leftovers(tmp_path) == []


def test_corrupted_file_is_rejected_leaving_nothing_half_written(tiny, tmp_path):
    with pytest.raises(VislabError, match=r"could not download train-images.*corrupt/train-images.*MD5"):
        fetch(tmp_path, [f"{tiny.url}/corrupt/"], tiny.files, retries=2)
    assert leftovers(tmp_path) == []  # no temp file, no final file
    assert tiny.requests["/corrupt/train-images-idx3-ubyte.gz"] == 1  # a bad checksum is not retried


def test_file_with_right_checksum_but_invalid_content_is_rejected(tiny, tmp_path):
    files = dict(tiny.files)
    files["t10k-labels-idx1-ubyte.gz"] = gzip.compress(b"\0\0\x08\x01\0\0\0\x0a" + bytes(range(10))[::-1] + b"x")
    tiny.files = files
    with pytest.raises(VislabError, match="t10k-labels-idx1-ubyte.gz.*not a valid MNIST file.*trailing"):
        fetch(tmp_path, [f"{tiny.url}/good/"], files)
    assert leftovers(tmp_path) == sorted(set(NAMES) - {"t10k-labels-idx1-ubyte.gz"})


def test_bad_existing_file_is_replaced_and_stale_parts_removed(tiny, tmp_path):
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"half a file")
    (tmp_path / ".train-labels-idx1-ubyte.gz.abc123.part").write_bytes(b"killed mid-download")
    fetch(tmp_path, [f"{tiny.url}/good/"], tiny.files)
    assert leftovers(tmp_path) == sorted(NAMES)
    assert (tmp_path / "train-labels-idx1-ubyte.gz").read_bytes() == tiny.files["train-labels-idx1-ubyte.gz"]


def test_checksums_file_is_validated(tmp_path, tiny):
    bad = tmp_path / "bad.json"
    for content, problem in (("{not json", "cannot read checksums"), ('{"a": "xyz"}', "32-digit MD5"),
                             ('{"train.gz": "' + "0" * 32 + '"}', "unknown MNIST file 'train.gz'")):
        bad.write_text(content)
        args = argparse.Namespace(dest=str(tmp_path / "d"), mirror=[tiny.url], checksums=str(bad),
                                  retries=0, timeout=TIMEOUT)
        with pytest.raises(VislabError, match=problem):
            run_download(args)
    assert sum(tiny.requests.values()) == 0


def test_uppercase_checksums_are_accepted(tiny, tmp_path, capsys):
    """load_checksums accepts upper-case hex (as some tools print MD5s); it must compare equal to hexdigest()."""
    table = tmp_path / "md5.json"
    table.write_text(json.dumps({name: md5.upper() for name, md5 in md5_table(tiny.files).items()}))
    args = argparse.Namespace(dest=str(tmp_path / "d"), mirror=[f"{tiny.url}/good/"], checksums=str(table),
                              retries=0, timeout=TIMEOUT)
    assert run_download(args) == 0
    assert leftovers(tmp_path / "d") == sorted(NAMES)
    # The second run recognises the files on disk as verified too.
    before = sum(tiny.requests.values())
    assert run_download(args) == 0
    assert sum(tiny.requests.values()) == before and capsys.readouterr().out.count("already present") == 4


def test_cli_download_end_to_end(tiny, tmp_path, capsys):
    from vislab.cli import main

    table = tmp_path / "md5.json"
    table.write_text(json.dumps(md5_table(tiny.files)))
    dest = tmp_path / "mnist"
    common = ["--checksums", str(table), "--retries", "0", "--timeout", str(TIMEOUT)]
    assert main(["mnist", "download", str(dest), "--mirror", closed_port_url(), "--mirror", f"{tiny.url}/good/",
                 *common]) == 0
    out = capsys.readouterr().out
    assert f"train-images-idx3-ubyte.gz: downloaded from {tiny.url}/good/train-images-idx3-ubyte.gz" in out
    assert load_mnist(dest, "test")[0].shape == (10, 28, 28)
    assert main(["mnist", "download", str(tmp_path / "other"), "--mirror", f"{tiny.url}/missing/", *common]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not download") and "HTTP 404" in err and err.count("\n") == 1
    assert leftovers(tmp_path / "other") == []


def test_load_checksums_rejects_short_non_hex_and_non_object_tables(tmp_path):
    path = tmp_path / "md5.json"
    with pytest.raises(VislabError, match="checksums file not found"):
        download.load_checksums(path)
    # 31 hex digits, 32 non-hex letters, and a list instead of an object are all malformed
    for content in ('{"a": "' + "0" * 31 + '"}', '{"a": "' + "x" * 32 + '"}', '["' + "0" * 32 + '"]'):
        path.write_text(content)
        with pytest.raises(VislabError, match="must be a JSON object of file name -> 32-digit MD5 hex"):
            download.load_checksums(path)
    path.write_text('{"a": "' + "0123456789abcdefABCDEF0123456789" + '"}')
    assert download.load_checksums(path) == {"a": "0123456789abcdefABCDEF0123456789"}
