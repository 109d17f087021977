"""Black-box: /daemons on a real gunicorn serving the demo device."""
import json
import os
import signal

import pytest

from pvcore.supervisor import process_running as alive
from pvcore.testing import wait_until

pytestmark = pytest.mark.gunicorn


def cmdline(pid):
    """The command line of ``pid``; right after a spawn the kernel may still
    be setting it up (exec has closed its CLOEXEC fds, argv not yet mapped)."""
    def read():
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode()

    return wait_until(read, timeout=5)


def daemons(server):
    status, data = server.client().json("GET", "/daemons")
    assert status == 200
    return {entry["name"]: entry for entry in data}


def put(server, name, body):
    status, headers, data = server.request("PUT", f"/daemons/{name}", body=body,
                                           headers={"Content-Type": "application/json"})
    return status, json.loads(data) if data else None


def test_list_stop_start_restart(start_gunicorn):
    server = start_gunicorn(demo=True)
    listed = daemons(server)
    xconnect = listed["pv-xconnect"]
    assert xconnect["pid"] > 0 and xconnect["respawn"] is True
    assert "xconnect_daemon" in cmdline(xconnect["pid"])
    assert listed["ssh"] == {"name": "ssh", "pid": 0, "respawn": False}
    assert list(listed)[0] == "pv-xconnect"

    # stop: the process is gone when the 200 arrives
    assert put(server, "pv-xconnect", '{"action":"stop"}') == (200, None)
    assert not alive(xconnect["pid"])
    assert daemons(server)["pv-xconnect"] == {"name": "pv-xconnect", "pid": -1, "respawn": False}

    # start: a new process, visible at once
    assert put(server, "pv-xconnect", '{"action":"start"}') == (200, None)
    started = daemons(server)["pv-xconnect"]
    assert started["respawn"] is True and started["pid"] > 0 and started["pid"] != xconnect["pid"]
    assert alive(started["pid"]) and "xconnect_daemon" in cmdline(started["pid"])

    # restart
    assert put(server, "pv-xconnect", '{"action":"restart"}') == (200, None)
    restarted = daemons(server)["pv-xconnect"]
    assert restarted["pid"] not in (started["pid"], 0, -1) and not alive(started["pid"])

    # errors
    assert put(server, "nonexistent-daemon", '{"action":"stop"}') == (404, {"Error": "Daemon not found"})
    assert put(server, "pv-xconnect", '{"action":"reload"}') == (
        400, {"Error": "Invalid action. Use 'start', 'stop', or 'restart'"})
    assert put(server, "pv-xconnect", "") == (400, {"Error": "No data"})
    assert put(server, "pv-xconnect", "{") == (400, {"Error": "Invalid JSON"})
    assert daemons(server)["pv-xconnect"]["pid"] == restarted["pid"]

    # the daemon logs to <storage>/logs/daemons/pv-xconnect.log and talks to the socket
    log_path = os.path.join(server.storage_dir, "logs", "daemons", "pv-xconnect.log")
    wait_until(lambda: os.path.exists(log_path) and '"xconnect_started"' in open(log_path).read())
    wait_until(lambda: any(json.loads(line)["event"].startswith("xconnect_graph")
                           for line in open(log_path).read().splitlines()))


def test_crash_respawn_and_shutdown(start_gunicorn):
    server = start_gunicorn(demo=True)
    pid = daemons(server)["pv-xconnect"]["pid"]
    os.kill(pid, signal.SIGKILL)
    new = wait_until(lambda: (p := daemons(server)["pv-xconnect"]["pid"]) > 0 and p != pid and p, timeout=10)
    assert alive(new) and "xconnect_daemon" in cmdline(new)
    events = server.log_events()
    exited = [e for e in events if e.get("event") == "daemon_exited" and e.get("daemon") == "pv-xconnect"]
    respawned = [e for e in events if e.get("event") == "daemon_respawned" and e.get("daemon") == "pv-xconnect"]
    assert len(exited) == 1 and exited[0]["code"] == -9
    assert len(respawned) == 1 and respawned[0]["child_pid"] == new

    # ssh started on request, then gunicorn stops: no daemon survives
    assert put(server, "ssh", '{"action":"start"}') == (200, None)
    ssh = daemons(server)["ssh"]["pid"]
    assert alive(ssh) and "--placeholder" in cmdline(ssh)
    assert server.stop() == 0
    assert not alive(new) and not alive(ssh)


def test_daemon_status_changes_are_published(start_gunicorn):
    from pvcore.testing import StreamReader

    server = start_gunicorn(demo=True)
    first = wait_until(lambda: daemons(server)["pv-xconnect"]["pid"] > 0 and daemons(server)["pv-xconnect"])
    with StreamReader(server.socket, "/_pvcore/events?since=0&types=daemon.status") as watcher:
        started = watcher.event(5)
        assert (started["subject"], started["data"]) == (
            "pv-xconnect", {"old": "STOPPED", "new": "RUNNING", "pid": first["pid"]})
        assert put(server, "pv-xconnect", '{"action":"stop"}')[0] == 200
        assert watcher.event(5)["data"] == {"old": "RUNNING", "new": "STOPPED", "pid": -1}
        assert put(server, "pv-xconnect", '{"action":"start"}')[0] == 200
        running = watcher.event(5)["data"]
        assert running["new"] == "RUNNING" and running["pid"] == daemons(server)["pv-xconnect"]["pid"]
        os.kill(running["pid"], signal.SIGKILL)  # a crash: respawned after a backoff
        assert watcher.event(5)["data"] == {"old": "RUNNING", "new": "RESPAWNING", "pid": 0}
        again = watcher.event(10)["data"]
        assert again["old"] == "RESPAWNING" and again["new"] == "RUNNING" and again["pid"] not in (0, running["pid"])
