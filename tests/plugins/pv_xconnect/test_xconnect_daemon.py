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
    """A tiny HTTP server on a Unix socket answering /xconnect-graph.

    ``/_pvcore/events`` answers 400 (an upstream pv-ctrl) unless ``streams``
    is a list: the connection is then kept there, for the test to write to.
    """

    def __init__(self, path):
        self.path = path
        self.status = 200
        self.graph = [LINK]
        self.requests = []
        self.streams = None
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
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            if data.startswith(b"GET /_pvcore/events"):
                self.requests.append(data)
                if self.streams is None:
                    conn.sendall(b'HTTP/1.0 400 X\r\n\r\n{"Error":"unknown endpoint"}')
                    conn.close()
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n")
                    self.streams.append(conn)
                continue
            with conn:
                body = json.dumps(self.graph).encode() if self.status == 200 else b'{"Error":"x"}'
                conn.sendall(b"HTTP/1.0 %d X\r\nContent-Type: application/json\r\n\r\n" % self.status + body)
                self.requests.append(data)

    def graph_requests(self):
        return [r for r in self.requests if r.startswith(b"GET /xconnect-graph")]

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
        wait_until(lambda: len(server.graph_requests()) == 2)  # at start, then on finding no stream
        server.graph = []
        proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: len(server.graph_requests()) == 3, timeout=3)  # well before the 5 s interval
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        proc.kill()
    events = [json.loads(line)["event"] for line in proc.stdout.read().splitlines()]
    assert events == ["xconnect_started", "xconnect_graph", "xconnect_polling", "xconnect_reconcile_requested",
                      "xconnect_graph", "xconnect_stopped"]
    proc.stdout.close()


def test_process_follows_the_event_stream_and_resumes_after_the_last_id(server):
    server.streams = []
    env = dict(os.environ, PVCORE_CTRL_SOCKET=server.path)
    proc = subprocess.Popen([sys.executable, "-m", "pv_xconnect.xconnect_daemon"], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(server.graph_requests()) == 2)  # at start, and once connected
        assert [r for r in server.requests if b"_pvcore" in r][0].startswith(
            b"GET /_pvcore/events?types=container.status,revision.running HTTP/1.0\r\n")
        server.graph = [dict(LINK, consumer_pid=7)]
        event = {"id": 41, "time": 0, "type": "container.status", "subject": "c", "data": {}}
        server.streams[0].sendall(json.dumps(event).encode() + b"\n")
        wait_until(lambda: len(server.graph_requests()) == 3, timeout=3)
        server.streams[0].close()  # the server restarts: resume after event 41
        wait_until(lambda: len(server.streams) == 2, timeout=5)
        assert b"&since=41 HTTP/1.0" in [r for r in server.requests if b"_pvcore" in r][-1]
        wait_until(lambda: len(server.graph_requests()) == 4, timeout=3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        proc.kill()
    events = [json.loads(line) for line in proc.stdout.read().splitlines()]
    names = [e["event"] for e in events]
    assert names == ["xconnect_started", "xconnect_graph", "xconnect_following", "xconnect_graph",
                     "xconnect_stream_lost", "xconnect_following", "xconnect_stopped"]
    assert events[3]["graph"][0]["consumer_pid"] == 7
    proc.stdout.close()
