"""A container without privilege cannot starve the host (docs/architecture.md, "Connections").

Each attack runs from a non-mgmt container (process runtime) while the host
makes ``GET /containers`` calls the way ``curl`` does (a connect that finds
the listen backlog full fails at once): every call must be answered, within
a second.

* ``connect``: processes opening and closing connections as fast as they
  can (before: 65–100 % of the host's calls failed at connect);
* ``refused``: requests refused on their head (403) whose chunked bodies
  never end (before: each held a request thread draining it).
"""
import json
import os
import time

import pytest

from pvcore.bench.flood import probe
from pvcore.testing import short_tempdir, wait_until, write_revision
from reliability_helpers import LONG, start_server, stop_server

pytestmark = pytest.mark.gunicorn

CALLS = 400 if LONG else 100

def _flooder(kind, out, *args, roles=()):
    script = ("import sys\nfrom pvcore.bench.flood import main\n"
              f"main([{kind!r}, '--ready', {os.path.join(out, kind)!r}, " + ", ".join(map(repr, args)) + "])\n")
    return {"#spec": "service-manifest-run@1", "name": "flood", "type": "lxc", "group": "app",
            "status_goal": "STARTED", "restart_policy": "container", "roles": list(roles),
            "exec": ["{python}", "-c", script]}

@pytest.fixture(name="flooded")
def _flooded(request):
    kind, args, env = (request.param + ({},))[:3]
    env = dict(env)
    base = short_tempdir("pvfl")
    out = os.path.join(base, "out")
    os.makedirs(out)
    state = {"#spec": "pantavisor-service-system@1"}
    if kind:
        state["flood/run.json"] = _flooder(kind, out, *args, roles=env.pop("roles", ()))
    write_revision(os.path.join(base, "storage"), state)
    server = start_server({"PVCORE_THREADS": "8", **env}, demo=False, base=base)
    try:
        if kind:
            wait_until(lambda: os.path.exists(os.path.join(out, kind)), 30, message=f"the {kind} flood")
            time.sleep(1.0)  # let it fill what it can
        server.out = out
        server.kind = kind
        yield server
    finally:
        stop_server(server)

@pytest.mark.parametrize("flooded", [pytest.param(("connect", ("--procs", "4")), id="connect"),
                                     pytest.param(("refused", ("--connections", "32")), id="refused")],
                         indirect=True)
def test_the_host_is_answered_within_a_second_during_a_flood(flooded):
    times, failures = probe(flooded.socket, CALLS, timeout=5.0)
    # NOTE: before, 65-100 % failed at connect; the flood now fills only the
    # container's own socket (pvcore/ctrlsockets.py), so none may fail.
    assert failures == 0, f"{failures} of {CALLS} host calls failed"
    assert max(times) < 1.0, sorted(times)[-5:]
    if flooded.kind == "connect":  # it did reach pvcore, and was shed as the container's
        shed = wait_until(lambda: _shed(flooded.log_path), 10, message="caller_connections_shed")
        assert {line["caller"] for line in shed} == {"flood"}, shed


def _slow_containers(out):
    """A state of five non-mgmt containers, each at its thread cap with a body trickling into POST /signal."""
    state = {"#spec": "pantavisor-service-system@1"}
    for i in range(5):
        flooder = _flooder("trickle", out, "--connections", "8")
        flooder["name"] = f"slow{i}"
        flooder["exec"][-1] = flooder["exec"][-1].replace(os.path.join(out, "trickle"), os.path.join(out, f"slow{i}"))
        state[f"slow{i}/run.json"] = flooder
    return state


def _wait_slow_containers(out):
    wait_until(lambda: all(os.path.exists(os.path.join(out, f"slow{i}")) for i in range(5)), 30,
               message="five trickling containers")
    time.sleep(1.0)  # let them fill what they can


def test_several_containers_holding_threads_leave_the_host_one():
    """Five containers, each at its thread cap with a body trickling into POST /signal
    (a request any container may make): the host is still answered within a second."""
    base = short_tempdir("pvtr")
    out = os.path.join(base, "out")
    os.makedirs(out)
    state = _slow_containers(out)
    write_revision(os.path.join(base, "storage"), state)
    server = start_server({"PVCORE_THREADS": "16"}, demo=False, base=base)
    try:
        _wait_slow_containers(out)
        times, failures = probe(server.socket, CALLS, timeout=5.0)
        assert failures == 0, f"{failures} of {CALLS} host calls failed"
        assert max(times) < 1.0, sorted(times)[-5:]
    finally:
        stop_server(server)


def test_containers_holding_threads_leave_a_mgmt_container_its_own():
    """Five non-mgmt containers at their thread caps (bodies trickling into POST /signal)
    once took every thread the host left: a mgmt container calling from inside waited
    for minutes. Tenants now hold at most half the threads (pvcore/shares.py)."""
    base = short_tempdir("pvtm")
    out = os.path.join(base, "out")
    os.makedirs(out)
    state = _slow_containers(out)
    go, result = os.path.join(out, "go"), os.path.join(out, "probe")
    state["mgmt/run.json"] = dict(_flooder("probe", out, "--connections", "50", "--go", go, roles=["mgmt"]),
                                  name="mgmt")
    write_revision(os.path.join(base, "storage"), state)
    server = start_server({"PVCORE_THREADS": "16"}, demo=False, base=base)
    try:
        _wait_slow_containers(out)
        open(go, "w").close()
        seen = wait_until(lambda: os.path.exists(result) and json.load(open(result)), 120,
                          message="the mgmt container's calls")
        assert seen["failures"] == 0, f"{seen['failures']} of 50 mgmt calls failed"
        assert max(seen["times"]) < 1.0, sorted(seen["times"])[-5:]
        times, failures = probe(server.socket, 50, timeout=5.0)  # and the host's share is still there
        assert failures == 0 and max(times) < 1.0, (failures, sorted(times)[-5:])
    finally:
        stop_server(server)


def _shed(log_path):
    lines = []
    with open(log_path, errors="replace") as fh:
        for text in fh:
            if '"caller_connections_shed"' in text:
                lines.append(json.loads(text[text.index("{"):]))
    return lines


def _open_to_all(socket_path):
    """Let any uid connect to ``socket_path`` (to call as an unknown caller)."""
    os.chmod(socket_path, 0o666)
    folder = os.path.dirname(socket_path)
    while folder not in ("/", "/tmp"):
        os.chmod(folder, os.stat(folder).st_mode | 0o011)
        folder = os.path.dirname(folder)


def _as_uid(uid, fn):
    """Run ``fn()`` in a child process with effective uid ``uid``; its success as a bool."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setuid(uid)
            fn()
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1] == 0


def _refusals(server, cases):
    import socket
    for head, status in cases:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2.0)
            sock.connect(server.socket)
            sock.sendall(head + b"x" * 1000)
            data = b""
            t0 = time.monotonic()
            while time.monotonic() - t0 < 2.0:
                try:
                    sock.sendall(b"x" * 100)  # the body goes on
                except OSError:
                    pass
                try:
                    chunk = sock.recv(65536)
                except socket.timeout:
                    break
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                data += chunk
            assert data.split(b" ", 2)[1:2] == [status], (head, data)
            assert time.monotonic() - t0 < 1.5, (head, "connection kept open")


ENDLESS = b"Content-Length: 1000000000\r\n\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n\r\n100000\r\n"


@pytest.mark.parametrize("flooded", [(None, ())], indirect=True, ids=["host"])
def test_a_refused_request_is_answered_and_closed_without_reading_its_body(flooded):
    """Before: the error handler drained the body first, so a body that never
    ends held a request thread and got no answer at all."""
    _refusals(flooded, [
        (b"DELETE /containers HTTP/1.1\r\nHost: localhost\r\n" + ENDLESS, b"400"),  # method
        (b"PUT /nowhere HTTP/1.1\r\nHost: localhost\r\n" + CHUNKED, b"400"),  # unknown endpoint
        (b"PATCH /user-meta/k HTTP/1.1\r\nHost: localhost\r\n" + ENDLESS, b"400"),  # method, templated
        (b"PATCH /containers HTTP/1.1\r\nHost: localhost\r\n" + CHUNKED, b"501"),  # framework
    ])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to call as another uid (an unknown caller)")
@pytest.mark.parametrize("flooded", [(None, ())], indirect=True, ids=["unknown"])
def test_an_unknown_callers_request_is_refused_without_reading_its_body(flooded):
    _open_to_all(flooded.socket)
    assert _as_uid(65534, lambda: _refusals(flooded, [  # an unknown caller: not pvcore's uid, in no container
        (b"PUT /user-meta/k HTTP/1.1\r\nHost: localhost\r\n" + ENDLESS, b"500"),
        (b"PUT /containers/x HTTP/1.1\r\nHost: localhost\r\n" + CHUNKED, b"500"),
    ]))


@pytest.mark.parametrize("flooded", [("streams", ("--connections", "20"), {"roles": ["mgmt"]})], indirect=True,
                         ids=["streams"])
def test_one_caller_cannot_take_every_stream_slot(flooded):
    """Before: a mgmt container took all 16 slots and the host's watcher got 503."""
    with open(os.path.join(flooded.out, "streams")) as fh:
        statuses = fh.read().split()
    assert 0 < statuses.count("200") < 16, statuses
    from pvcore.testing import StreamReader
    with StreamReader(flooded.socket, "/_pvcore/events") as watcher:
        assert watcher.status == 200
    with StreamReader(flooded.socket, "/_pvcore/logs/flood?follow=1") as follower:
        assert follower.status == 200


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to call as other uids (unknown callers)")
@pytest.mark.parametrize("flooded", [(None, (), {"PVCORE_CALLER_CONNECTIONS": "4"})], indirect=True, ids=["unknown"])
def test_unknown_callers_do_not_share_one_bucket(flooded):
    """Before: every unknown caller counted as one, so one that held its
    connections left every other unknown caller closed at accept."""
    import socket
    _open_to_all(flooded.socket)
    r, w = os.pipe()
    hog = os.fork()
    if hog == 0:  # uid 65534 holds as many idle connections as it may
        os.setuid(65534)
        held = []
        for _ in range(8):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(flooded.socket)
            held.append(sock)
        # Tell the test once the server has seen them: those over the cap of 4
        # are closed at accept (EOF), so its bucket is full from then on.
        deadline, seen = time.monotonic() + 10, b"n"  # "n": the server never closed any
        while time.monotonic() < deadline and seen != b"x":
            closed = 0
            for sock in held:
                sock.settimeout(0.05)
                try:
                    closed += sock.recv(1) == b""
                except (socket.timeout, OSError):
                    pass
            seen = b"x" if closed >= 4 else seen
        os.write(w, seen)
        time.sleep(30)
        os._exit(0)
    try:
        assert os.read(r, 1) == b"x"

        def answered():
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(flooded.socket)
                sock.sendall(b"GET /containers HTTP/1.0\r\nHost: localhost\r\n\r\n")
                data = sock.recv(65536)
                assert data.split(b" ", 2)[1] == b"500", data  # unknown, answered (not closed at accept)

        assert _as_uid(65533, answered)
    finally:
        os.kill(hog, 9)
        os.waitpid(hog, 0)
        os.close(r)
        os.close(w)


SIGNALLER = r'''
import os, sys, time
from pvcore.testserver import raw_request
body = b'{"type":"ready","payload":""}'
request = b"POST /signal HTTP/1.0\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
for _ in range(300):
    raw_request(os.environ["PVCORE_CTRL_SOCKET"], request)
time.sleep(1.1)
raw_request(os.environ["PVCORE_CTRL_SOCKET"], request)  # its next second: told what was held back
open(sys.argv[1], "w").close()
while True:
    time.sleep(1)
'''


def _events(log_path, name):
    with open(log_path, errors="replace") as fh:
        return [json.loads(t[t.index("{"):]) for t in fh if f'"{name}"' in t]


def test_a_container_posting_in_a_loop_cannot_flood_the_log():
    base = short_tempdir("pvsig")
    done = os.path.join(base, "done")
    state = {"#spec": "pantavisor-service-system@1", "chatty/run.json": {
        "#spec": "service-manifest-run@1", "name": "chatty", "type": "lxc", "group": "app",
        "status_goal": "READY", "restart_policy": "container", "roles": [],
        "exec": ["{python}", "-c", SIGNALLER, done]}}
    write_revision(os.path.join(base, "storage"), state)
    server = start_server(demo=False, base=base)
    try:
        wait_until(lambda: os.path.exists(done), 60, message="301 signals")
        lines = [e for e in _events(server.log_path, "http_request") if e.get("path") == "/signal"]
        held = sum(e["lines"] for e in _events(server.log_path, "access_lines_suppressed") if e["caller"] == "chatty")
        # every request is either a line or counted in a summary; at most 20 lines a second
        assert len(lines) + held == 301 and len(lines) <= 100, (len(lines), held)
    finally:
        stop_server(server)
