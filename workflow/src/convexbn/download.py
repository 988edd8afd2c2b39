"""Bounded downloads: a byte cap, a deadline per attempt, retries, the MD5 computed while streaming,
atomic placement, and clean-up of partial files an interrupted run left behind.

Every error raised here is a `DataError` whose message names the problem and the fix.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import logging
import os
import socket
import ssl
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from convexbn.io import atomic_writer

log = logging.getLogger(__name__)

#: Default byte cap of one download: the larger official CIFAR archive (cifar-10-python.tar.gz,
#: 170,498,071 bytes; cifar-100-python.tar.gz has 169,001,437) plus about 17 % margin.
DEFAULT_MAX_BYTES = 200_000_000
#: Default time one download attempt may take in total (170 MB at 100 kB/s, with margin).
DEFAULT_DEADLINE = 3600.0

_CHUNK = 1 << 20
_RETRY_HTTP_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})


class DataError(ValueError):
    """A dataset could not be fetched, verified or decoded; the message says what to do."""


class TransientError(Exception):
    """A network failure worth retrying (a refused connection, a 503, a stall, a missed deadline)."""


@dataclass(frozen=True)
class Limits:
    """How much one download may cost: bytes, seconds per attempt, seconds per network read, retries."""

    max_bytes: int = DEFAULT_MAX_BYTES
    deadline: float = DEFAULT_DEADLINE
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 1.0

    def check(self) -> Limits:
        """Self after checking every limit is a sensible number; DataError naming the config key otherwise."""
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise DataError(f"retries={self.retries!r} must be a non-negative integer (config key fetch.retries)")
        for key, value in (("timeout", self.timeout), ("deadline", self.deadline)):
            if not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise DataError(f"{key}={value!r} must be a positive number of seconds (config key fetch.{key})")
        if not isinstance(self.backoff, (int, float)) or not 0 <= self.backoff < float("inf"):
            raise DataError(f"backoff={self.backoff!r} must be >= 0 seconds (config key fetch.backoff)")
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int) or self.max_bytes < 1:
            raise DataError(f"max_bytes={self.max_bytes!r} must be a positive integer (config key fetch.max_bytes)")
        return self


def check_url(url: Any, key: str) -> str:
    """`url` after checking it parses and is http(s):// with a host or file:// with a path."""
    shown = repr(url) if len(str(url)) <= 120 else repr(str(url)[:100] + "...")
    fix = "give a full URL such as https://host/path/archive.tar.gz or file:///path/archive.tar.gz"
    if not isinstance(url, str):
        raise DataError(f"config key {key}: {shown} is not a URL; {fix}")
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number in 0..65535
    except ValueError as exc:
        raise DataError(f"config key {key}: {shown} is not a valid URL ({exc}); {fix}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise DataError(f"config key {key}: {shown} is not an http://, https:// or file:// URL; {fix}")
    if scheme != "file" and not parts.hostname:
        raise DataError(f"config key {key}: {shown} names no host; {fix}")
    if scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path):
        raise DataError(f"config key {key}: {shown} is not a local file:// URL; {fix}")
    return url


def file_url_path(url: str) -> Path | None:
    """The local path of a file:// URL, or None for other schemes."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "file":
        return None
    return Path(urllib.request.url2pathname(parts.path))


def remove_stale_parts(target: Path) -> list[Path]:
    """Delete partial files `.NAME.*.part` that an interrupted download of `target` left in its folder."""
    pattern = os.path.join(glob.escape(str(target.parent)), f".{glob.escape(target.name)}.*.part")
    removed = []
    for found in glob.glob(pattern):
        part = Path(found)
        try:
            if stat.S_ISREG(part.lstat().st_mode):
                part.unlink()
                removed.append(part)
        except FileNotFoundError:
            continue
    if removed:
        log.info(
            "removed %d partial file(s) of an interrupted download: %s",
            len(removed),
            ", ".join(p.name for p in removed),
        )
    return removed


# --------------------------------------------------------------------------- the deadline
class _Watchdog:
    """Shuts down the sockets of one attempt when its deadline passes, so a blocked read returns at once."""

    def __init__(self, seconds: float) -> None:
        """Arm a timer of `seconds` (started by `with`)."""
        self.seconds = seconds
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def watch(self, sock: socket.socket) -> None:
        """Add a connected socket (shut down at once when the deadline has already passed)."""
        with self._lock:
            self._sockets.append(sock)
            fired = self.fired
        if fired:
            _shutdown(sock)

    def _fire(self) -> None:
        """Deadline reached: shut down every watched socket."""
        with self._lock:
            self.fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def __enter__(self) -> _Watchdog:
        """Start the timer."""
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the timer."""
        self._timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    """Shut a socket down for reading and writing (on the descriptor, so TLS sockets work too)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    """A urllib opener whose HTTP(S) connections register their sockets with `watchdog`."""

    class _Conn(http.client.HTTPConnection):
        """HTTP connection watched by the deadline."""

        def connect(self) -> None:
            """Connect, then hand the socket to the watchdog."""
            super().connect()
            watchdog.watch(self.sock)

    class _TLSConn(http.client.HTTPSConnection):
        """HTTPS connection watched by the deadline."""

        def connect(self) -> None:
            """Connect (TLS included), then hand the socket to the watchdog."""
            super().connect()
            watchdog.watch(self.sock)

    class _Handler(urllib.request.HTTPHandler):
        """Opens http:// URLs through the watched connection."""

        def http_open(self, req: urllib.request.Request) -> Any:
            """Open plain HTTP through the watched connection class."""
            return self.do_open(_Conn, req)

    class _TLSHandler(urllib.request.HTTPSHandler):
        """Opens https:// URLs through the watched connection."""

        def https_open(self, req: urllib.request.Request) -> Any:
            """Open HTTPS through the watched connection class with default certificate checks."""
            return self.do_open(_TLSConn, req, context=ssl.create_default_context())

    return urllib.request.build_opener(_Handler(), _TLSHandler())


# --------------------------------------------------------------------------- one attempt
def _stream(resp: Any, fh: BinaryIO, url: str, limits: Limits, watchdog: _Watchdog) -> tuple[str, int]:
    """Copy a response body into `fh` under the byte cap; return (md5, bytes)."""
    length = resp.headers.get("Content-Length")
    expected = int(length) if length and length.isdigit() else None
    if expected is not None and expected > limits.max_bytes:
        raise DataError(
            f"{url} announces {expected:,} bytes, more than fetch.max_bytes = {limits.max_bytes:,}; "
            "check the URL (the official archives are about 170 MB) or raise fetch.max_bytes"
        )
    digest, received, last_log = hashlib.md5(), 0, time.monotonic()
    while chunk := resp.read1(_CHUNK):
        received += len(chunk)
        if received > limits.max_bytes:
            raise DataError(
                f"{url} sent more than fetch.max_bytes = {limits.max_bytes:,} bytes; nothing was kept. "
                "Check the URL (the official archives are about 170 MB) or raise fetch.max_bytes"
            )
        fh.write(chunk)
        digest.update(chunk)
        if time.monotonic() - last_log > 5.0:
            total = f" of {expected / 1e6:.1f}" if expected else ""
            log.info("downloading %s: %.1f%s MB", url, received / 1e6, total)
            last_log = time.monotonic()
    if watchdog.fired:
        raise TransientError(
            f"no complete download within fetch.deadline = {limits.deadline:g} s ({received:,} bytes received)"
        )
    if expected is not None and received != expected:
        raise TransientError(f"connection closed after {received} of {expected} bytes (truncated transfer)")
    return digest.hexdigest(), received


def download_once(url: str, fh: BinaryIO, limits: Limits) -> tuple[str, int]:
    """One attempt: stream `url` into `fh` (rewound first) within the byte cap and the deadline;
    return (md5, bytes); raise TransientError for failures worth retrying, DataError otherwise."""
    fh.seek(0)
    fh.truncate()
    request = urllib.request.Request(url, headers={"User-Agent": "convexbn-data/1"})
    with _Watchdog(limits.deadline) as watchdog:
        try:
            with _opener(watchdog).open(request, timeout=min(limits.timeout, limits.deadline)) as resp:
                return _stream(resp, fh, url, limits, watchdog)
        except urllib.error.HTTPError as exc:
            if exc.code in _RETRY_HTTP_CODES:
                raise TransientError(f"HTTP {exc.code} {exc.reason}") from exc
            raise DataError(f"the server refused {url}: HTTP {exc.code} {exc.reason}; check the URL") from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            if watchdog.fired:
                raise TransientError(f"no complete download within fetch.deadline = {limits.deadline:g} s") from exc
            reason = getattr(exc, "reason", None) or exc
            raise TransientError(f"{type(exc).__name__}: {reason}") from exc


def download_verified(
    url: str,
    target: Path,
    md5: str,
    limits: Limits,
    on_failure: Callable[[list[str]], str],
    on_mismatch: Callable[[str, int], str],
) -> Path:
    """Download `url` to `target` with retries; keep it only when its MD5 is `md5`. `on_failure(errors)`
    and `on_mismatch(actual, size)` build the messages of the DataErrors raised otherwise."""
    remove_stale_parts(target)
    attempts = limits.retries + 1
    errors: list[str] = []
    with atomic_writer(target, suffix=".part") as fh:
        for attempt in range(1, attempts + 1):
            try:
                log.info("downloading %s (attempt %d of %d)", url, attempt, attempts)
                actual, size = download_once(url, fh, limits)
                break
            except TransientError as exc:
                errors.append(f"attempt {attempt}: {exc}")
                log.warning("download of %s failed (%s)", url, exc)
                if attempt < attempts:
                    delay = min(limits.backoff * 2 ** (attempt - 1), 60.0)
                    log.info("retrying %s in %.3g s", url, delay)
                    time.sleep(delay)
        else:
            raise DataError(on_failure(errors))
        if actual != md5:
            raise DataError(on_mismatch(actual, size))
    return target


def copy_verified(
    source: Path, target: Path, md5: str, limits: Limits, key: str, on_mismatch: Callable[[str, int], str]
) -> Path:
    """Copy a local regular file of at most `limits.max_bytes` to `target` atomically, hashing while
    copying; refuse it on an MD5 mismatch (`key` names the config key that gave `source`)."""
    try:
        st = os.stat(source)
    except OSError as exc:
        raise DataError(
            f"config key {key}: {str(source)!r} cannot be read ({os.strerror(exc.errno or 0)}); "
            "fix the path to an existing archive"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(
            f"config key {key}: {str(source)!r} is not an existing regular file (a folder, device or "
            "FIFO cannot be an archive); fix the path"
        )
    if st.st_size > limits.max_bytes:
        raise DataError(
            f"config key {key}: {str(source)!r} has {st.st_size:,} bytes, more than fetch.max_bytes = "
            f"{limits.max_bytes:,}; check the file (the official archives are about 170 MB)"
        )
    remove_stale_parts(target)
    with atomic_writer(target, suffix=".part") as fh, open(source, "rb") as src:
        digest, copied = hashlib.md5(), 0
        while chunk := src.read(_CHUNK):
            copied += len(chunk)
            if copied > limits.max_bytes:  # the file grew while being copied
                raise DataError(
                    f"config key {key}: {str(source)!r} grew beyond fetch.max_bytes = "
                    f"{limits.max_bytes:,} while being copied; check the file"
                )
            digest.update(chunk)
            fh.write(chunk)
        if digest.hexdigest() != md5:
            raise DataError(on_mismatch(digest.hexdigest(), copied))
    return target


__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_BYTES",
    "DataError",
    "Limits",
    "TransientError",
    "check_url",
    "copy_verified",
    "download_once",
    "download_verified",
    "file_url_path",
    "remove_stale_parts",
]
