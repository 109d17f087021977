"""No caller can starve the others (docs/architecture.md, "Connections").

A mgmt container (``hog``, buggy rather than forbidden: it may download
objects) runs :mod:`pvcore.bench.hostile` and holds connections that stop
mid-request: request heads that never end, bodies trickling at 1 byte/s,
large downloads never read, idle keep-alives and idle connections. Meanwhile
the host's ``GET /containers`` answers in under a second, and another
container's ``POST /signal`` is accepted. 16 connections in ``make test``,
64 in ``make test-long``.
"""
import json
import os
import re
import socket
import time

import pytest

from pvcore.testing import short_tempdir, wait_until, write_revision
from reliability_helpers import LONG, alive, all_ready, start_server, stop_server

pytestmark = pytest.mark.gunicorn

CONNECTIONS = 64 if LONG else 16
OBJECT = os.urandom(1 << 22)  # 4 MiB: far more than a socket buffer holds

SIGNALLER = r'''
import json, os, socket, sys, time
out = sys.argv[1]
while not os.path.exists(os.path.join(out, "go")):
    time.sleep(0.05)
t0 = time.monotonic()
with socket.socket(socket.AF_UNIX) as sock:
    sock.settimeout(30)
    sock.connect(os.environ["PVCORE_CTRL_SOCKET"])
    body = b'{"type":"ready","payload":""}'
    sock.sendall(b"POST /signal HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
doc = {"status": int(data.split()[1]), "seconds": time.monotonic() - t0}
with open(os.path.join(out, "signal.tmp"), "w") as fh:
    json.dump(doc, fh)
os.rename(os.path.join(out, "signal.tmp"), os.path.join(out, "signal"))
while True:
    time.sleep(1)
'''


def _run(name, argv, roles, goal="STARTED"):
    return {"#spec": "service-manifest-run@1", "name": name, "type": "lxc", "group": "app", "status_goal": goal,
            "restart_policy": "container", "roles": roles, "exec": argv}


@pytest.fixture(name="device")
def _device():
    base = short_tempdir("pvst")
    out = os.path.join(base, "out")
    os.makedirs(out)
    from hashlib import sha256
    sha = sha256(OBJECT).hexdigest()
    hog = ["{python}", "-c", "import os, sys, time\n"
           f"while not os.path.exists({os.path.join(out, 'hog-go')!r}): time.sleep(0.05)\n"
           "from pvcore.bench.hostile import main\n"
           f"main(['--connections', '{CONNECTIONS}', '--object', '{sha}', '--ready', {os.path.join(out, 'hog')!r}])\n"]
    state = {"#spec": "pantavisor-service-system@1",
             "hog/run.json": _run("hog", hog, ["mgmt"]),
             "good/run.json": _run("good", ["{python}", "-c", SIGNALLER, out], [], goal="READY")}
    write_revision(os.path.join(base, "storage"), state)
    server = start_server(demo=False, base=base)
    status, _, body = server.request("PUT", f"/objects/{sha}", OBJECT)
    assert status == 200, body
    yield server, out
    stop_server(server)


def _timed_get(server, path="/containers"):
    t0 = time.monotonic()
    conn = server.client(timeout=30)
    try:
        status, _, body = conn.call("GET", path)
    finally:
        conn.close()
    return status, time.monotonic() - t0, body


def test_hostile_connections_starve_nobody_else(device):
    server, out = device
    open(os.path.join(out, "hog-go"), "w").close()
    ready = wait_until(lambda: os.path.exists(os.path.join(out, "hog")) and json.load(open(os.path.join(out, "hog"))),
                       30, message="the hog holding its connections")
    assert ready["opened"] == CONNECTIONS, ready
    time.sleep(1.0)  # the downloads have filled their sockets, the trickles hold threads

    worst = 0.0
    for _ in range(5):
        status, seconds, body = _timed_get(server)
        assert status == 200, body
        worst = max(worst, seconds)
        time.sleep(0.2)
    assert worst < 1.0, f"GET /containers took {worst:.2f}s while {CONNECTIONS} hostile connections were held"

    open(os.path.join(out, "go"), "w").close()
    signal = wait_until(lambda: os.path.exists(os.path.join(out, "signal")) and json.load(open(os.path.join(out, "signal"))),
                        10, message="the other container's POST /signal")
    assert signal["status"] == 200 and signal["seconds"] < 1.0, signal
    listing = wait_until(lambda: all_ready(server), 10, message="good READY")
    assert listing["good"]["status"] == "READY"
    # the hog is still holding its connections: nothing of this was after they gave up
    hog_pid = ready["pid"]
    assert os.path.exists(f"/proc/{hog_pid}")
    # and they do not keep pvcore from stopping cleanly (gunicorn kills a worker that takes
    # longer than its graceful_timeout, and a killed worker stops no container)
    t0 = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - t0 < 25
    wait_until(lambda: not alive(hog_pid), 10, message="the hog to be stopped with pvcore")


def _refused(sock) -> bool:
    """Whether the server closed ``sock`` without a word (within 0.5 s)."""
    sock.settimeout(0.5)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def test_connections_over_a_callers_cap_are_closed_at_accept():
    cap = 6
    server = start_server({"PVCORE_CALLER_CONNECTIONS": str(cap)})
    held = []
    try:
        # the runner is the host, like pv-xconnect (which polls now and then)
        for _ in range(cap + 2):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(server.socket)
            held.append(sock)
            if _refused(sock):
                break
        else:
            raise AssertionError(f"{len(held)} connections accepted with a cap of {cap}")
        assert len(held) <= cap + 1
        # the ones held are still served, and once they close a new one is accepted
        held[0].settimeout(5)
        held[0].sendall(b"GET /containers HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert held[0].recv(12) == b"HTTP/1.1 200"
        for sock in held:
            sock.close()
        held = []
        wait_until(lambda: _timed_get(server)[0] == 200, 10, message="a new connection once others closed")
    finally:
        for sock in held:
            sock.close()
        stop_server(server)


def test_pipelined_requests_split_anywhere_are_all_answered():
    """Keep-alive and pipelining survive heads being read in the poll loop."""
    server = start_server()
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(server.socket)
            request = b"GET /containers HTTP/1.1\r\nHost: localhost\r\n\r\n"
            sock.sendall(request + request[:11])
            time.sleep(0.3)
            sock.sendall(request[11:] + b"PUT /user-meta/pipelined HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nab")
            time.sleep(0.3)
            sock.sendall(b"c" + request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
        assert statuses == [b"200", b"200", b"200", b"200"], data[:2000]
        assert _timed_get(server, "/user-meta")[2] == b'{"pipelined":"abc"}'
    finally:
        stop_server(server)
