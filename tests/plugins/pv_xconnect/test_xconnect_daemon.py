"""The pv-xconnect program: HTTP/1.0 over a Unix socket, graph logging, signals."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from pv_xconnect import xconnect_daemon
from pvcore.testing import short_tempdir, wait_until

LINK = {"consumer": "c", "consumer_pid": 5, "provider": "p", "provider_pid": 6, "name": "svc", "type": "unix",
        "role": "any", "interface": "unix", "target": None, "socket": "/run/x.sock"}


class GraphServer:
    """A tiny HTTP server on a Unix socket answering /xconnect-graph."""

    def __init__(self, path):
        self.path = path
        self.status = 200
        self.graph = [LINK]
        self.requests = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        self._sock.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                body = json.dumps(self.graph).encode() if self.status == 200 else b'{"Error":"x"}'
                conn.sendall(b"HTTP/1.0 %d X\r\nContent-Type: application/json\r\n\r\n" % self.status + body)
                self.requests.append(data)

    def close(self):
        self._sock.close()


@pytest.fixture
def server():
    base = short_tempdir()
    srv = GraphServer(os.path.join(base, "pv-ctrl"))
    yield srv
    srv.close()


def lines(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_http_get_speaks_http10(server):
    status, body = xconnect_daemon.http_get(server.path, "/xconnect-graph")
    assert status == 200 and json.loads(body) == [LINK]
    assert server.requests[0].startswith(b"GET /xconnect-graph HTTP/1.0\r\n")


def test_reconciler_logs_only_changes(server, capsys):
    rec = xconnect_daemon.Reconciler(server.path)
    rec.run_once()
    rec.run_once()
    events = lines(capsys)
    assert [e["event"] for e in events] == ["xconnect_graph"]
    assert events[0]["links"] == 1
    assert events[0]["graph"][0]["path"] == "unix"  # no target: the interface
    server.graph = [LINK, dict(LINK, consumer="d", target="/t.sock")]
    rec.run_once()
    events = lines(capsys)
    assert events[0]["links"] == 2 and {g["path"] for g in events[0]["graph"]} == {"unix", "/t.sock"}


def test_reconciler_tolerates_errors(server, capsys):
    rec = xconnect_daemon.Reconciler(server.path)
    server.status = 400
    rec.run_once()
    rec.run_once()
    rec2 = xconnect_daemon.Reconciler(server.path + ".missing")
    rec2.run_once()
    events = lines(capsys)
    assert [e["event"] for e in events] == ["xconnect_graph_unavailable", "xconnect_graph_unreachable"]
    assert events[0]["status"] == 400
    server.status = 200
    rec.run_once()
    assert lines(capsys)[0]["event"] == "xconnect_graph"


def test_process_reconciles_on_sigusr1_and_exits_0_on_sigterm(server):
    env = dict(os.environ, PVCORE_CTRL_SOCKET=server.path)
    proc = subprocess.Popen([sys.executable, "-m", "pv_xconnect.xconnect_daemon"], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(server.requests) == 1)
        server.graph = []
        proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: len(server.requests) == 2, timeout=3)  # well before the 5 s interval
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        proc.kill()
    events = [json.loads(line)["event"] for line in proc.stdout.read().splitlines()]
    assert events == ["xconnect_started", "xconnect_graph", "xconnect_reconcile_requested", "xconnect_graph",
                      "xconnect_stopped"]
    proc.stdout.close()
