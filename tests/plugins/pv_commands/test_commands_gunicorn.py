"""Black-box: /commands admission and demo poweroff on a real gunicorn.

Transitions, reboot and orphan checks: test_commands_update_gunicorn.py."""
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



def test_demo_poweroff_stops_every_service_and_removes_the_socket(start_gunicorn):
    server = start_gunicorn(demo=True)
    status, _, _ = command(server, "POWEROFF_DEVICE", "test shutdown")
    assert status == 200
    assert server.proc.wait(40) == 0
    assert not os.path.exists(server.socket)
    assert events(server, "demo_poweroff")
    assert {e.get("service") for e in events(server, "service_started")} == \
        {e.get("service") for e in events(server, "service_stopped")}
