"""Black-box: /commands on a real gunicorn serving the demo device."""
import json
import os

import pytest

from pvcore.testing import wait_until

pytestmark = pytest.mark.gunicorn


def command(server, op, payload=""):
    return server.request("POST", "/commands", json.dumps({"op": op, "payload": payload}),
                          {"Content-Type": "application/json"})


def events(server, name):
    return [e for e in server.log_events() if e.get("event") == name]


def test_admission_answers_over_the_socket(start_gunicorn):
    server = start_gunicorn(demo=True)
    status, headers, body = command(server, "LOCAL", "0")
    assert (status, json.loads(body)) == (400, {"Error": "Command has bad format"})
    assert headers["Content-Type"] == "application/json"
    status, _, body = server.request("POST", "/commands", b"x" * 4097)
    assert (status, json.loads(body)) == (507, {"Error": "Not enough disk space available"})
    status, _, body = command(server, "UNCLAIM")
    assert (status, body) == (204, b"")
    status, _, body = command(server, "XCONNECT_GRAPH")
    assert (status, body) == (200, b"")
    wait_until(lambda: events(server, "command_done"))


def test_demo_poweroff_shuts_pvcore_down_cleanly(start_gunicorn):
    server = start_gunicorn(demo=True)
    status, _, _ = command(server, "POWEROFF_DEVICE", "test shutdown")
    assert status == 200
    assert server.proc.wait(40) == 0
    assert not os.path.exists(server.socket)
    assert events(server, "demo_poweroff")
    assert any(e.get("service") == "pv_commands.worker" for e in events(server, "service_stopped"))


def test_demo_reboot_replaces_the_worker(start_gunicorn):
    server = start_gunicorn(demo=True)
    before = server.worker_pid()
    status, _, _ = command(server, "REBOOT_DEVICE", "test reboot")
    assert status == 200
    wait_until(lambda: server.worker_pid() not in (None, before), timeout=40, message="a new worker")
    server.wait_healthy()
    assert server.proc.poll() is None
    assert events(server, "demo_reboot")
