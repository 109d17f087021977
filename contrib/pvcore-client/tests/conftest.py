"""A fake pv-ctrl server and helpers to run the pvcontrol CLI against it.

The fake records every request (method, raw path, headers, body, which
connection carried it) and answers from a per-test table, so tests can
assert the exact bytes the CLI sends and feed it any status/body.
"""

from __future__ import annotations

import os
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import pytest

# The distribution's root (contrib/pvcore-client): the CLI runs from this checkout.
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Recorded:
    """One request as the fake server received it."""

    method: str
    path: str
    headers: object  # http.client.HTTPMessage
    body: bytes
    connection: int

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name)


@dataclass
class Reply:
    """A canned answer. *chunked* streams the body with chunked encoding
    (as pv-ctrl does for object downloads); *drop* closes the connection
    without answering."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    chunked: bool = False
    drop: bool = False
    headers: Tuple[Tuple[str, str], ...] = ()


Answer = Union[Reply, Callable[[Recorded], Reply]]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection_id = self.server.fake._connected(self.request)

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        fake: FakePv = self.server.fake
        recorded = Recorded(self.command, self.path, self.headers, self._read_body(), self.connection_id)
        reply = fake._answer(recorded)
        if reply.drop:
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.status == 204:
            self.end_headers()
        elif reply.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(reply.body), 4096):
                piece = reply.body[start:start + 4096]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        self.wfile.flush()

    do_GET = do_PUT = do_POST = do_DELETE = _handle


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


class FakePv:
    """A pv-ctrl stand-in listening on *path* in a background thread."""

    Reply = Reply  # tests reach it here: importing conftest is fragile

    def __init__(self, path: str):
        self.path = path
        self.requests: List[Recorded] = []
        self.connections = 0
        self._table: Dict[Tuple[str, str], List[Answer]] = {}
        self._lock = threading.Lock()
        self._sockets: List[socket.socket] = []
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    # -- test-facing API ---------------------------------------------------

    def reply(self, method: str, path: str, *answers: Answer, status: int = 200,
              body: Union[bytes, str] = b"", **kwargs: object) -> None:
        """Answer ``method path`` with *answers* in turn (the last one
        repeats), or with a single Reply built from the keywords."""
        if not answers:
            if isinstance(body, str):
                body = body.encode()
            answers = (Reply(status=status, body=body, **kwargs),)
        self._table[(method, path)] = list(answers)

    def close_connections(self) -> None:
        """Close every open connection from the server side, as a server
        does with idle keep-alive connections, and wait until they are."""
        with self._lock:
            socks, self._sockets = self._sockets, []
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        time.sleep(0.05)

    # -- server side -------------------------------------------------------

    def _connected(self, sock: socket.socket) -> int:
        with self._lock:
            self.connections += 1
            self._sockets.append(sock)
            return self.connections

    def _answer(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            answers = self._table.get((recorded.method, recorded.path))
            if not answers:
                body = b'{"Error":"unknown endpoint: %s"}' % recorded.path.encode()
                return Reply(status=400, body=body)
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return answer(recorded) if callable(answer) else answer

    def start(self) -> "FakePv":
        self._server = _Server(self.path, _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self.close_connections()
        if os.path.exists(self.path):
            os.unlink(self.path)


@pytest.fixture
def short_tmp():
    """A temporary directory with a short path: AF_UNIX paths are limited to
    about 107 bytes, which pytest's tmp_path can exceed."""
    path = tempfile.mkdtemp(prefix="pvc")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_pv():
    """Factory: start a FakePv on a given socket path (stopped at teardown)."""
    started: List[FakePv] = []

    def make(path: Union[str, Path]) -> FakePv:
        fake = FakePv(str(path)).start()
        started.append(fake)
        return fake

    yield make
    for fake in started:
        fake.stop()


@pytest.fixture
def pv(make_pv, short_tmp) -> FakePv:
    """A running fake pv-ctrl on a fresh socket."""
    return make_pv(short_tmp / "pv-ctrl")


def cli_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for the CLI subprocess: this checkout importable, no
    socket override unless *extra* sets one."""
    env = dict(os.environ)
    env.pop("PVCONTROL_SOCKET", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def run_pvcontrol(args: Sequence[str], stdin: Optional[bytes] = None, cwd: Optional[str] = None,
                  env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Run ``python -m pvcontrol ARGS`` and capture bytes output."""
    return subprocess.run(
        [sys.executable, "-m", "pvcontrol", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        cwd=cwd,
        env=cli_env(env),
        timeout=30,
    )


@pytest.fixture
def cli(pv):
    """Run pvcontrol against the fake server: ``cli("steps", "ls")``.

    Global options such as -f or -m go first in *args*, after ``-s``.
    """

    def run(*args: str, stdin: Optional[bytes] = None, cwd: Optional[str] = None) -> subprocess.CompletedProcess:
        return run_pvcontrol(["-s", pv.path, *args], stdin=stdin, cwd=cwd)

    return run


@pytest.fixture
def run_raw():
    """Run pvcontrol with exactly the given arguments (no -s added)."""
    return run_pvcontrol
