"""Test helper: a real HTTP server on 127.0.0.1 serving files from a folder, with fault injection.

Usage (any test module in tests/ can import it):

    from cifar_server import CifarServer, closed_port_url, write_test_archives

    md5s = write_test_archives(tmp_path / "mirror")          # generated CIFAR-format archives
    with CifarServer(tmp_path / "mirror") as server:
        url = server.url_for("cifar-10-python.tar.gz")       # http://127.0.0.1:PORT/cifar-10-python.tar.gz
        server.mode = "corrupt"                              # switch faults at any time

Modes: "ok" (the file as is), "corrupt" (same length, some bytes flipped), "truncate" (announces the
full Content-Length but closes the connection after `fraction` of the body), "short" (serves only
`fraction` of the file with a matching Content-Length: a truncated file delivered "successfully"),
"error" (answers HTTP `status`), "hang" (accepts the request and never answers until the server stops),
"drip" (announces the file's length, then sends one body byte every `drip_interval` seconds),
"drip_headers" (sends the status line, then one header byte every `drip_interval` seconds, never
finishing the headers), "endless" (no Content-Length, 64 KiB chunks of zeros without end).
The last three stop by themselves after `send_limit` bytes, so that a client that fails to stop
them ends anyway and a test can tell (`bytes_sent` reaches `send_limit`).
`fail_first=N` answers 503 to the first N requests, then behaves per `mode`. `requests` lists the
paths requested so far; `bytes_sent` counts the bytes the slow and endless modes wrote.
`closed_port_url()` gives a URL on 127.0.0.1 where nothing listens.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlparse

MODES = ("ok", "corrupt", "truncate", "short", "error", "hang", "drip", "drip_headers", "endless")


class _Handler(BaseHTTPRequestHandler):
    """Serves GET requests for files in the server's folder according to its mode."""

    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature fixed by the base class
        """Stay quiet: tests read `requests` instead of a log."""

    def do_GET(self) -> None:  # noqa: N802 - name fixed by the base class
        """Answer one GET according to the owning CifarServer's current settings."""
        owner = self.server.owner
        with owner._lock:
            owner.requests.append(self.path)
            failing = len(owner.requests) <= owner.fail_first
            mode, status, fraction = owner.mode, owner.status, owner.fraction
        if failing:
            self.send_error(503, "Service Unavailable (injected failure)")
            return
        if mode == "hang":
            owner._stopping.wait(owner.hang_seconds)
            return
        if mode == "error":
            self.send_error(status, "injected error")
            return
        if mode in ("drip", "drip_headers", "endless"):
            self._send_slowly(mode)
            return
        relative = unquote(urlparse(self.path).path).lstrip("/")
        target = (owner.directory / relative).resolve()
        if owner.directory not in target.parents or not target.is_file():
            self.send_error(404, "File not found")
            return
        body = target.read_bytes()
        length = len(body)
        if mode == "corrupt" and body:
            middle = len(body) // 2
            body = body[:middle] + bytes(b ^ 0xFF for b in body[middle : middle + 16]) + body[middle + 16 :]
        elif mode == "short":
            body = body[: int(len(body) * fraction)]
            length = len(body)
        elif mode == "truncate":
            body = body[: int(len(body) * fraction)]
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        try:
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def _send_slowly(self, mode: str) -> None:
        """Drip the body or the headers, or stream zeros without end, until `send_limit` bytes or a hang-up."""
        owner = self.server.owner
        try:
            if mode == "drip_headers":
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self.wfile.flush()
                piece, delay = b"X", owner.drip_interval
            elif mode == "drip":
                self.send_response(200)
                self.send_header("Content-Length", str(owner.send_limit * 2))
                self.end_headers()
                piece, delay = b"\x00", owner.drip_interval
            else:
                self.send_response(200)
                self.end_headers()
                piece, delay = bytes(1 << 16), 0.0
            while owner.bytes_sent < owner.send_limit and not owner._stopping.is_set():
                self.wfile.write(piece)
                self.wfile.flush()
                with owner._lock:
                    owner.bytes_sent += len(piece)
                if delay:
                    owner._stopping.wait(delay)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its CifarServer."""

    daemon_threads = True
    allow_reuse_address = True
    owner: CifarServer


class CifarServer:
    """A real HTTP server on 127.0.0.1 (free port) serving `directory`, usable as a context manager."""

    def __init__(
        self,
        directory: str | Path,
        *,
        mode: str = "ok",
        fail_first: int = 0,
        status: int = 503,
        fraction: float = 0.5,
        hang_seconds: float = 30.0,
        drip_interval: float = 0.02,
        send_limit: int = 3000,
    ) -> None:
        """Configure the server; nothing listens until start() or `with`."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        self.directory = Path(directory).resolve()
        self.mode, self.fail_first, self.status = mode, fail_first, status
        self.fraction, self.hang_seconds = fraction, hang_seconds
        self.drip_interval, self.send_limit, self.bytes_sent = drip_interval, send_limit, 0
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT (no trailing slash)."""
        if self._httpd is None:
            raise RuntimeError("CifarServer is not running: use `with CifarServer(...) as server:` or start()")
        return f"http://127.0.0.1:{self._httpd.server_port}"

    def url_for(self, filename: str) -> str:
        """URL of `filename` inside the served folder."""
        return f"{self.url}/{filename.lstrip('/')}"

    def start(self) -> CifarServer:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="cifar-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hanging handlers, stop serving and close the socket."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd, self._thread = None, None

    def __enter__(self) -> CifarServer:
        """Start the server."""
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the server."""
        self.stop()


def closed_port_url(filename: str = "cifar-10-python.tar.gz") -> str:
    """An http URL on 127.0.0.1 whose port was just free (nothing listens: connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{filename}"


def write_test_archives(
    directory: str | Path,
    *,
    n_train: int = 50,
    n_test: int = 20,
    seed: int = 0,
    image_size: int = 32,
    names: tuple[str, ...] = ("cifar10", "cifar100"),
) -> dict[str, str]:
    """Write generated CIFAR-format archives under their official file names; return {name: md5}."""
    from convexbn.data import CIFAR_SOURCES
    from convexbn.synthetic_cifar import make_cifar_archive

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        name: make_cifar_archive(
            folder / CIFAR_SOURCES[name].filename, name, n_train, n_test, seed, image_size=image_size
        )
        for name in names
    }
