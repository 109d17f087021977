"""A real pvcore for tests: gunicorn on a temp Unix socket, and clients that
speak to it over the wire (:class:`UnixHTTPConnection`, :func:`raw_request`,
:class:`StreamReader`).

The fixtures that start these servers (``start_gunicorn``, ``demo_device``)
are in :mod:`pvcore.testing`, which re-exports every name here.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Mapping, Optional


def short_tempdir(prefix: str = "pv") -> str:
    """A temp dir with a short path: AF_UNIX socket paths stop at 107 bytes."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, message: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


def returns_within(fn: Callable[[], Any], timeout: float = 5.0) -> bool:
    """Whether ``fn()`` returns (or raises) within ``timeout`` s, run in a daemon thread of its own:
    a deadlock fails the test instead of hanging the suite."""
    import threading

    done = threading.Event()

    def run():
        try:
            fn()
        except BaseException:
            pass
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(timeout)


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over a Unix stream socket (HTTP/1.1, keep-alive)."""

    def __init__(self, path: str, timeout: float = 30.0):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock

    def call(self, method: str, path: str, body=None, headers: Optional[Mapping[str, str]] = None):
        """Send one request; return ``(status, headers, body_bytes)``."""
        headers = dict(headers or {})
        self.request(method, path, body=body, headers=headers)
        resp = self.getresponse()
        return resp.status, resp.headers, resp.read()

    def json(self, method: str, path: str, body=None, headers=None):
        """Like :meth:`call`, decoding the body as JSON."""
        status, _, data = self.call(method, path, body, headers)
        return status, json.loads(data) if data else None


def raw_request(path: str, data: bytes, half_close: bool = False, timeout: float = 10.0) -> bytes:
    """Send raw bytes over the socket and read until the server closes.

    With ``half_close`` the write side is shut after sending, as ``nc -N`` does.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


class StreamReader:
    """A client of a long-lived endpoint over its own connection.

    Sends ``GET path`` (HTTP/1.1) and reads the response head; then
    :meth:`line` and :meth:`event` return the body line by line, waiting at
    most ``timeout`` seconds each. A refused stream (503 …) has its body in
    ``body``.
    """

    def __init__(self, socket_path: str, path: str, timeout: float = 10.0, read: bool = True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(socket_path)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        self._buf = b""
        self.status = 0
        self.headers: dict = {}
        self.body = b""
        if read:
            self.read_head()

    def read_head(self) -> None:
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        if "content-length" in self.headers:
            length = int(self.headers["content-length"])
            while len(self._buf) < length:
                self._fill()
            self.body, self._buf = self._buf[:length], self._buf[length:]

    def _fill(self, timeout: Optional[float] = None) -> None:
        if timeout is not None:
            self.sock.settimeout(max(timeout, 0.001))
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("stream closed")
        self._buf += chunk

    def line(self, timeout: float = 10.0) -> bytes:
        """The next line (without its newline); ``socket.timeout`` if none came."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("no line within %ss" % timeout)
            self._fill(remaining)
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def event(self, timeout: float = 10.0) -> dict:
        """The next line as JSON."""
        return json.loads(self.line(timeout))

    def events_until(self, predicate: Callable[[dict], Any], timeout: float = 10.0) -> list:
        """Events up to and including the first one ``predicate`` accepts."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            event = self.event(max(deadline - time.monotonic(), 0.001))
            seen.append(event)
            if predicate(event):
                return seen

    def closed(self, timeout: float = 5.0) -> bool:
        """Whether the server ends the stream within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self._fill(deadline - time.monotonic())
        except EOFError:
            return True
        except (socket.timeout, ConnectionResetError):
            return False
        return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "StreamReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def child_pids(pid: int) -> list:
    """Direct children of ``pid``."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


class GunicornServer:
    """A gunicorn process serving pvcore on a temp socket (see ``start_gunicorn``)."""

    def __init__(self, base: str, env: Mapping[str, str]):
        self.base = base
        self.storage_dir = os.path.join(base, "storage")
        self.run_dir = os.path.join(base, "run")
        self.socket = os.path.join(self.run_dir, "pv-ctrl")
        self.log_path = os.path.join(base, "gunicorn.log")
        self.env = dict(os.environ)
        self.env.update({
            "PVCORE_STORAGE_DIR": self.storage_dir,
            "PVCORE_RUN_DIR": self.run_dir,
            "PVCORE_SOCKET": self.socket,
            "PVCORE_LOG_FORMAT": "json",
        })
        if "PVCORE_DEMO" not in env:
            # A laptop, not a device (no reboot, no modprobe, no LXC): the
            # demo's settings without its seeded revision. Pass PVCORE_DEMO=1
            # for the demo device, PVCORE_DEMO=0 for a device's defaults.
            self.env.update({"PVCORE_DEMO": "1", "PVCORE_DEMO_SEED": "0"})
        self.env.update(env)
        self.proc: Optional[subprocess.Popen] = None
        #: The interpreter that runs gunicorn (another venv's, to test an install).
        self.python = sys.executable

    def start(self, timeout: float = 30.0) -> "GunicornServer":
        """Launch gunicorn and wait until the worker's services are up."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.python, "-m", "gunicorn", "-c", "python:pvcore.gunicorn_conf"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.base,
        )
        log.close()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until ``/_pvcore/health`` answers ``ok`` (after a worker restart too)."""
        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            try:
                conn = self.client(timeout=2)
                status, data = conn.json("GET", "/_pvcore/health")
                conn.close()
                return status == 200 and data["status"] == "ok"
            except (OSError, http.client.HTTPException, ValueError):
                return False

        wait_until(healthy, timeout, 0.05, "gunicorn to become healthy")

    def client(self, timeout: float = 30.0) -> UnixHTTPConnection:
        """A new HTTP/1.1 connection to the server."""
        return UnixHTTPConnection(self.socket, timeout=timeout)

    def request(self, method: str, path: str, body=None, headers=None):
        """One request on a fresh connection: ``(status, headers, body_bytes)``."""
        conn = self.client()
        try:
            return conn.call(method, path, body, headers)
        finally:
            conn.close()

    def worker_pid(self) -> Optional[int]:
        """The pid of gunicorn's (single) worker."""
        children = child_pids(self.proc.pid) if self.proc else []
        return children[0] if children else None

    def log_text(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()

    def log_events(self) -> list:
        """The JSON log lines written so far, parsed."""
        events = []
        for line in self.log_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
        return events

    def stop(self, timeout: float = 40.0) -> Optional[int]:
        """SIGTERM gunicorn and wait for it to exit; returns its exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("gunicorn did not stop within %ss" % timeout)
