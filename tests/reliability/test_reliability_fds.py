"""Callers cannot run the worker out of file descriptors (docs/architecture.md, "Connections").

Before, four containers each holding 128 kept-alive connections (after one
request: a socket and the pidfd pinning its caller each) made ``accept()``
fail with ``EMFILE``; gthread re-raised and the worker died, every container
with it.
"""
import os
import resource
import socket
import stat
import sys
import time

import pytest

from pvcore.bench.flood import probe
from pvcore.testing import short_tempdir, wait_until, write_revision
from reliability_helpers import start_server, stop_server

pytestmark = pytest.mark.gunicorn

HOG = r'''
import os, socket, sys, time
path, count, ready = os.environ["PVCORE_CTRL_SOCKET"], int(sys.argv[1]), sys.argv[2]
slots = [None] * count
announced = False
while True:
    for i, sock in enumerate(slots):
        if sock is not None:
            try:
                if sock.recv(65536, socket.MSG_DONTWAIT) == b"":
                    sock.close()
                    slots[i] = sock = None
            except BlockingIOError:
                pass
            except OSError:
                sock.close()
                slots[i] = sock = None
        if sock is None:
            sock = socket.socket(socket.AF_UNIX)
            sock.setblocking(False)
            try:
                sock.connect(path)
                if i % 2:  # half of them after a request: kept alive, their caller pinned
                    sock.send(b"GET /buildinfo HTTP/1.1\r\nHost: localhost\r\n\r\n")
                slots[i] = sock
            except OSError:
                sock.close()
    if not announced:
        open(ready, "w").close()
        announced = True
    time.sleep(0.2)
'''


def _hog(name, count, done):
    return {"#spec": "service-manifest-run@1", "name": name, "type": "lxc", "group": "app",
            "status_goal": "STARTED", "restart_policy": "container", "roles": [],
            "exec": ["{python}", "-c", HOG, str(count), done]}


def _nofile_python(base, limit):
    """An interpreter wrapper that runs under ``RLIMIT_NOFILE`` ``limit`` (soft and hard)."""
    path = os.path.join(base, "python-nofile")
    with open(path, "w") as fh:
        fh.write(f"#!{sys.executable}\nimport os, resource, sys\n"
                 f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))\n"
                 f"os.execv({sys.executable!r}, [{sys.executable!r}] + sys.argv[1:])\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def test_containers_holding_connections_under_a_low_nofile_leave_the_worker_and_the_host():
    base = short_tempdir("pvfd")
    out = os.path.join(base, "out")
    os.makedirs(out)
    state = {"#spec": "pantavisor-service-system@1"}
    for i in range(3):
        state[f"hog{i}/run.json"] = _hog(f"hog{i}", 128, os.path.join(out, f"hog{i}"))
    write_revision(os.path.join(base, "storage"), state)
    from pvcore.testserver import GunicornServer
    server = GunicornServer(base, {"PVCORE_DEMO": "1", "PVCORE_DEMO_SEED": "0"})
    server.python = _nofile_python(base, 600)  # room for (600 - 256) // 3 = 114 connections
    try:
        server.start()
        worker = server.worker_pid()
        wait_until(lambda: all(os.path.exists(os.path.join(out, f"hog{i}")) for i in range(3)), 60,
                   message="three containers holding connections")
        # they hold every connection they can get, and ask for more: until the guests' share is full
        wait_until(lambda: "caller_connection_refused" in server.log_text(), 30, message="the guests' share full")
        times, failures = probe(server.socket, 50, timeout=5.0)
        assert failures == 0 and max(times) < 1.0, (failures, sorted(times)[-5:])
        assert server.worker_pid() == worker
        assert "worker_connections_fitted" in server.log_text()
    finally:
        server.stop()
        import shutil
        shutil.rmtree(base, ignore_errors=True)


def test_a_worker_out_of_file_descriptors_pauses_instead_of_dying():
    server = start_server()
    try:
        worker = server.worker_pid()
        in_use = len(os.listdir(f"/proc/{worker}/fd"))
        _, hard = resource.prlimit(worker, resource.RLIMIT_NOFILE)
        resource.prlimit(worker, resource.RLIMIT_NOFILE, (in_use + 20, hard))
        held = []
        try:
            for _ in range(60):  # beyond what the worker can accept: they wait in the backlog
                sock = socket.socket(socket.AF_UNIX)
                sock.connect(server.socket)
                sock.sendall(b"GET /buildinfo HTTP/1.1\r\nHost: localhost\r\n\r\n")
                held.append(sock)
            # it runs out (counted once a second), and lives on
            wait_until(lambda: "EMFILE" in server.log_text(), 10, message="the worker out of descriptors")
            assert server.worker_pid() == worker
        finally:
            for sock in held:
                sock.close()
            resource.prlimit(worker, resource.RLIMIT_NOFILE, (hard, hard))
        times, failures = probe(server.socket, 20, timeout=5.0)
        assert failures == 0 and max(times) < 1.0, (failures, sorted(times)[-5:])
        assert server.worker_pid() == worker
    finally:
        stop_server(server)
