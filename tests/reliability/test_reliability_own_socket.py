"""Each container calls through a socket of its own (docs/architecture.md, "Connections").

Black-box, process runtime: two non-mgmt containers and the host. A socket
says where a connection came from; it restricts an identity, never grants
one: a container calling through another's socket is an unknown caller,
the host stays the host.
"""
import json
import os
import stat

import pytest

from pvcore.testing import UnixHTTPConnection, short_tempdir, wait_until, write_revision
from reliability_helpers import start_server, stop_server

pytestmark = pytest.mark.gunicorn

CALLER = r'''
import json, os, sys, time
from pvcore.testserver import raw_request

def signal(path):
    body = b'{"type":"ready","payload":""}'
    data = raw_request(path, b"POST /signal HTTP/1.0\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s"
                       % (len(body), body))
    head, _, payload = data.partition(b"\r\n\r\n")
    return [int(head.split()[1]), payload.decode()]

out, other = sys.argv[1], sys.argv[2]
own = os.environ["PVCORE_CTRL_SOCKET"]
theirs = os.path.join(os.path.dirname(own), other)
while not os.path.exists(theirs):
    time.sleep(0.05)
result = {"own": own, "own_signal": signal(own), "their_signal": signal(theirs)}
with open(os.path.join(out, os.environ["PVCORE_CONTAINER"] + ".tmp"), "w") as fh:
    json.dump(result, fh)
os.rename(os.path.join(out, os.environ["PVCORE_CONTAINER"] + ".tmp"), os.path.join(out, os.environ["PVCORE_CONTAINER"]))
while True:
    time.sleep(1)
'''


def _container(name, out, other):
    return {"#spec": "service-manifest-run@1", "name": name, "type": "lxc", "group": "app",
            "status_goal": "READY", "restart_policy": "container", "roles": [],
            "exec": ["{python}", "-c", CALLER, out, other]}


def _get(path, url):
    conn = UnixHTTPConnection(path)
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_socket_of_ones_own_and_nobody_elses():
    base = short_tempdir("pvown")
    out = os.path.join(base, "out")
    os.makedirs(out)
    write_revision(os.path.join(base, "storage"), {
        "#spec": "pantavisor-service-system@1",
        "alpha/run.json": _container("alpha", out, "beta"),
        "beta/run.json": _container("beta", out, "alpha"),
    })
    server = start_server(demo=False, base=base)
    try:
        results = {}
        for name in ("alpha", "beta"):
            path = os.path.join(out, name)
            results[name] = wait_until(lambda: os.path.exists(path) and json.load(open(path)), 30,
                                       message=f"{name}'s calls")
        ctrl = os.path.join(os.path.dirname(os.path.abspath(server.socket)), "ctrl")
        for name, other in (("alpha", "beta"), ("beta", "alpha")):
            result = results[name]
            assert result["own"] == os.path.join(ctrl, name)
            assert result["own"] != os.path.abspath(server.socket)
            assert stat.S_IMODE(os.stat(result["own"]).st_mode) == 0o660
            # its own READY through its own socket; through the other's it is nobody
            assert result["own_signal"] == [200, ""], name
            assert result["their_signal"] == [500, '{"Error":"Internal Error"}'], name
        # the host may reach into a container's socket and is still the host
        status, body = _get(os.path.join(ctrl, "alpha"), "/containers")
        assert status == 200, body
        assert {c["name"] for c in json.loads(body)} == {"alpha", "beta"}
        log = open(server.log_path, errors="replace").read()
        assert "connected through another container's socket" in log
    finally:
        stop_server(server, remove=False)
    try:
        # the sockets go with their containers
        assert not os.path.exists(ctrl) or os.listdir(ctrl) == []
    finally:
        import shutil
        shutil.rmtree(base, ignore_errors=True)
