"""``vislab mnist download``: fetch the four MNIST files from public mirrors, verified, written atomically.

Each file is tried on every mirror in turn; on one mirror, transient failures (HTTP 5xx or 429, a
timeout, a dropped connection) are retried with a short exponential backoff, while a definite "no"
(404, 403, connection refused, wrong checksum) moves on to the next mirror at once. A file is written
to a hidden temporary file in DEST and renamed into place only after its MD5 matches and it parses as
a valid IDX file, so DEST never holds a half-written or unverified MNIST file.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import math
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from vislab import __version__
from vislab.core.checkpoint import make_public
from vislab.core.errors import VislabError
from vislab.core.logging import make_output_dir, progress
from vislab.mnist.data import SPLIT_FILES, load_mnist, read_idx

# yann.lecun.com, the original host, now answers 403; these two mirrors serve the identical files.
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# MD5s of the originally published .gz files.
PUBLISHED_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_CHUNK = 64 * 1024


class _Transient(Exception):
    """A failure worth retrying on the same mirror."""


class _Refused(Exception):
    """A failure that retrying the same mirror will not fix."""


def download_mnist(dest: str | Path, mirrors: Sequence[str] | None = None, checksums: dict[str, str] | None = None,
                   retries: int = 2, timeout: float = 30.0, backoff: float = 0.5,
                   show_progress: bool = True) -> list[tuple[str, str]]:
    """Make sure DEST holds the four verified MNIST ``.gz`` files, downloading what is missing.

    Args:
        dest: target folder, created if needed.
        mirrors: base URLs tried in order (default ``DEFAULT_MIRRORS``).
        checksums: ``{file name: md5}`` replacing entries of ``PUBLISHED_MD5`` (for private mirrors).
        retries: extra attempts per mirror after a transient failure.
        timeout: seconds allowed for connecting and for each read.
        backoff: first wait before a retry in seconds, doubled after each further failure.
        show_progress: draw a progress bar per download.

    Returns:
        ``(file name, source)`` per file, source being the URL or ``"present"`` for a skipped file.
    """
    if retries < 0 or timeout <= 0:
        raise VislabError(f"--retries must be >= 0 and --timeout > 0 (got {retries} and {timeout})")
    table = dict(PUBLISHED_MD5)
    for name, md5 in (checksums or {}).items():
        if name not in table:
            raise VislabError(f"checksum given for unknown MNIST file {name!r}; expected one of {', '.join(table)}")
        table[name] = md5.lower()
    mirrors = list(mirrors) if mirrors else list(DEFAULT_MIRRORS)
    dest = Path(dest)
    make_output_dir(dest, "download folder")

    done = []
    for name, md5 in table.items():
        target = dest / name
        _remove_stale_parts(dest, name)
        if target.is_file() and _md5_file(target) == md5:
            done.append((name, "present"))
            continue
        done.append((name, _fetch_verified(name, md5, mirrors, target, retries, timeout, backoff, show_progress)))
    # The files are fine one by one; check that images and labels also agree with each other.
    for split in SPLIT_FILES:
        load_mnist(dest, split)
    return done


def _fetch_verified(name: str, md5: str, mirrors: list[str], target: Path, retries: int, timeout: float,
                    backoff: float, show_progress: bool) -> str:
    """Download ``name`` from the first mirror that delivers it intact; returns the URL used."""
    tried = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(backoff * 2 ** (attempt - 1))
            try:
                _download_to(url, md5, target, timeout, show_progress)
                return url
            except _Transient as exc:
                problem = str(exc)
            except _Refused as exc:
                problem = str(exc)
                break
            except OSError as exc:  # network errors are translated in _stream: this is the local disk
                raise VislabError(f"cannot write {target}: {exc.strerror or exc}") from None
        tried.append(f"{url} ({problem}{f', {attempt + 1} attempts' if attempt else ''})")
    raise VislabError(f"could not download {name}, tried: {'; '.join(tried)}")


def _download_to(url: str, md5: str, target: Path, timeout: float, show_progress: bool) -> None:
    """One attempt: stream ``url`` into a temp file next to ``target``, verify, rename into place."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    make_public(fd)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, contextlib.closing(_stream(url, timeout, target.name, show_progress)) as body:
            for chunk in body:
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != md5:
            raise _Refused(f"MD5 {digest.hexdigest()} does not match the expected {md5}")
        try:
            read_idx(tmp)
        except VislabError as exc:
            raise _Refused(f"not a valid MNIST file: {str(exc).split(': ', 1)[-1]}") from None
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _stream(url: str, timeout: float, name: str, show_progress: bool) -> Iterator[bytes]:
    """The body of ``url`` in chunks, failures translated into _Transient / _Refused."""
    request = urllib.request.Request(url, headers={"User-Agent": f"vislab/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            chunks = iter(lambda: response.read(_CHUNK), b"")
            size = f" ({total / 1e6:.1f} MB)" if total else ""
            received = 0
            for chunk in progress(chunks, desc=f"{name}{size}", enabled=show_progress,
                                  total=math.ceil(total / _CHUNK) if total else None):
                received += len(chunk)
                yield chunk
            if total is not None and received != total:
                raise _Transient(f"connection closed after {received} of {total} bytes")
    except urllib.error.HTTPError as exc:
        message = f"HTTP {exc.code} {exc.reason}"
        raise (_Transient if exc.code >= 500 or exc.code in (408, 429) else _Refused)(message) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            raise _Refused("connection refused") from None
        if isinstance(reason, socket.gaierror):
            raise _Refused(f"host not found ({reason.strerror})") from None
        if isinstance(reason, FileNotFoundError):  # file:// mirrors
            raise _Refused("no such file") from None
        raise _Transient(f"network error: {reason}") from None
    except TimeoutError:
        raise _Transient(f"no answer within {timeout:g} s") from None
    except (http.client.HTTPException, ConnectionError) as exc:
        raise _Transient(f"connection error: {type(exc).__name__} {exc}".strip()) from None


def _md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _remove_stale_parts(dest: Path, name: str) -> None:
    """Temp files left by a run that was killed outright (SIGKILL, power loss)."""
    for stale in dest.glob(f".{name}.*.part"):
        stale.unlink(missing_ok=True)


def load_checksums(path: str | Path) -> dict[str, str]:
    """A ``{"file name": "md5 hex"}`` JSON file, validated."""
    path = Path(path)
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError:
        raise VislabError(f"checksums file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VislabError(f"cannot read checksums file {path}: {exc}") from None
    if not isinstance(table, dict) or not all(
            isinstance(v, str) and len(v) == 32 and all(c in "0123456789abcdefABCDEF" for c in v)
            for v in table.values()):
        raise VislabError(f"checksums file {path} must be a JSON object of file name -> 32-digit MD5 hex")
    return table


def run_download(args: argparse.Namespace) -> int:
    """CLI handler: ``vislab mnist download DEST [--mirror URL]... [--checksums JSON] [--retries N] [--timeout S]``."""
    checksums = load_checksums(args.checksums) if getattr(args, "checksums", None) else None
    results = download_mnist(args.dest, mirrors=getattr(args, "mirror", None), checksums=checksums,
                             retries=getattr(args, "retries", 2), timeout=getattr(args, "timeout", 30.0))
    for name, source in results:
        print(f"{name}: {'already present, MD5 verified' if source == 'present' else f'downloaded from {source}'}")
    print(f"MNIST is ready in {args.dest} (use it with --data {args.dest})")
    return 0
