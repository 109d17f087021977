"""/daemons over make_core + make_client, with real (tiny) daemon processes."""
import json
import os
import signal
import sys

import pytest

import pv_daemons
import pv_xconnect
from pvcore import hookimpl
from pvcore.services import DaemonSpec
from pvcore.supervisor import process_running as alive
from pvcore.testing import wait_until

SLEEPER = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, lambda *a: exit(0)); time.sleep(600)"]
STUBBORN = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"]


class ExtraDaemons:
    """Another plugin contributing daemons."""

    @hookimpl
    def pv_daemons_declare(self, core):
        return [DaemonSpec("sleeper", SLEEPER), DaemonSpec("stubborn", STUBBORN, autostart=False),
                DaemonSpec("missing", ["/nonexistent/bin/daemon"])]


def cmdline(pid):
    """``/proc/<pid>/cmdline``; empty for a moment right after exec, so wait."""
    def read():
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()

    return wait_until(read, timeout=5)


def listing(client):
    resp = client.simulate_get("/daemons")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    return {entry["name"]: entry for entry in resp.json}, [entry["name"] for entry in resp.json]


@pytest.fixture
def started(make_core, make_client):
    core = make_core(plugins=[pv_daemons, pv_xconnect, ExtraDaemons()], overrides={"stop_timeout": 1.0})
    core.start()
    return core, make_client(core)


def test_list_before_start_shows_declaration_order_and_no_pids(make_core, make_client):
    core = make_core(plugins=[pv_daemons, pv_xconnect, ExtraDaemons()])
    by_name, order = listing(make_client(core))
    assert order == ["pv-xconnect", "ssh", "sleeper", "stubborn", "missing"]
    assert by_name["pv-xconnect"] == {"name": "pv-xconnect", "pid": 0, "respawn": True}
    assert by_name["ssh"] == {"name": "ssh", "pid": 0, "respawn": False}


def test_autostart_daemons_run_after_start(started):
    core, client = started
    by_name, _ = listing(client)
    for name in ("pv-xconnect", "sleeper"):
        assert by_name[name]["pid"] > 0 and by_name[name]["respawn"] is True
        assert alive(by_name[name]["pid"])
    assert by_name["ssh"] == {"name": "ssh", "pid": 0, "respawn": False}
    assert by_name["missing"] == {"name": "missing", "pid": 0, "respawn": False}
    assert b"xconnect_daemon" in cmdline(by_name["pv-xconnect"]["pid"])


def test_stop_kills_synchronously_then_start_spawns(started):
    core, client = started
    pid = listing(client)[0]["sleeper"]["pid"]
    resp = client.simulate_put("/daemons/sleeper", body='{"action":"stop"}')
    assert resp.status_code == 200 and resp.content == b""
    assert not alive(pid)
    assert listing(client)[0]["sleeper"] == {"name": "sleeper", "pid": -1, "respawn": False}
    resp = client.simulate_put("/daemons/sleeper", body='{"action":"start"}')
    assert resp.status_code == 200
    entry = listing(client)[0]["sleeper"]
    assert entry["respawn"] is True and entry["pid"] > 0 and entry["pid"] != pid and alive(entry["pid"])


def test_stop_sigkills_a_daemon_that_ignores_sigterm(started):
    core, client = started
    assert client.simulate_put("/daemons/stubborn", body='{"action":"start"}').status_code == 200
    pid = listing(client)[0]["stubborn"]["pid"]
    log_path = os.path.join(core.settings.storage_dir, "logs", "daemons", "stubborn.log")
    wait_until(lambda: os.path.exists(log_path) and b"up" in open(log_path, "rb").read())
    assert client.simulate_put("/daemons/stubborn", body='{"action":"stop"}').status_code == 200
    assert not alive(pid)
    assert listing(client)[0]["stubborn"]["pid"] == -1


def test_restart_gives_a_new_pid(started):
    core, client = started
    pid = listing(client)[0]["sleeper"]["pid"]
    assert client.simulate_put("/daemons/sleeper", body='{"action":"restart"}').status_code == 200
    entry = listing(client)[0]["sleeper"]
    assert entry["pid"] > 0 and entry["pid"] != pid and entry["respawn"] is True
    assert not alive(pid)


def test_start_of_a_running_daemon_keeps_it(started):
    core, client = started
    pid = listing(client)[0]["sleeper"]["pid"]
    assert client.simulate_put("/daemons/sleeper", body='{"action":"start"}').status_code == 200
    assert listing(client)[0]["sleeper"]["pid"] == pid


@pytest.mark.parametrize("body,status,message", [
    (b"", 400, "No data"),
    (b"{not json", 400, "Invalid JSON"),
    (b"[]", 400, "Invalid JSON"),
    (b"{}", 400, "Invalid action. Use 'start', 'stop', or 'restart'"),
    (b'{"action":"reload"}', 400, "Invalid action. Use 'start', 'stop', or 'restart'"),
    (b'{"action":1}', 400, "Invalid action. Use 'start', 'stop', or 'restart'"),
    (json.dumps({"action": "stop", "pad": "x" * 1100}).encode(), 507, "Not enough disk space available"),
])
def test_bad_bodies(make_core, make_client, body, status, message):
    core = make_core(plugins=[pv_daemons, pv_xconnect])
    resp = make_client(core).simulate_put("/daemons/pv-xconnect", body=body)
    assert resp.status_code == status
    assert resp.json == {"Error": message}


def test_unknown_daemon_is_404_before_the_body(make_core, make_client):
    core = make_core(plugins=[pv_daemons, pv_xconnect])
    resp = make_client(core).simulate_put("/daemons/nonexistent-daemon", body=b"")
    assert resp.status_code == 404
    assert resp.json == {"Error": "Daemon not found"}


def test_crash_is_respawned_with_one_event_each(started, log_output):
    core, client = started
    pid = listing(client)[0]["sleeper"]["pid"]
    os.kill(pid, signal.SIGKILL)
    new = wait_until(lambda: (p := listing(client)[0]["sleeper"]["pid"]) > 0 and p != pid and p, timeout=10)
    assert alive(new)
    exited = [e for e in log_output if e["event"] == "daemon_exited" and e["daemon"] == "sleeper"]
    respawned = [e for e in log_output if e["event"] == "daemon_respawned" and e["daemon"] == "sleeper"]
    assert len(exited) == 1 and exited[0]["code"] == -signal.SIGKILL
    assert len(respawned) == 1 and respawned[0]["child_pid"] == new


def test_stop_all_on_core_stop(started):
    core, client = started
    pids = [e["pid"] for e in listing(client)[0].values() if e["pid"] > 0]
    assert len(pids) == 2
    core.stop()
    assert not any(alive(pid) for pid in pids)


def test_daemon_control_hook(started):
    core, client = started
    assert core.hook.pv_daemons_control(core=core, name="ssh", action="start") is True
    entry = listing(client)[0]["ssh"]
    assert entry["pid"] > 0 and entry["respawn"] is True
    assert b"--placeholder" in cmdline(entry["pid"])
    assert core.hook.pv_daemons_control(core=core, name="ssh", action="stop") is True
    assert not alive(entry["pid"])
    assert core.hook.pv_daemons_control(core=core, name="nope", action="stop") is None


def test_xconnect_reconcile_wakes_the_daemon(started):
    core, client = started
    log_path = os.path.join(core.settings.storage_dir, "logs", "daemons", "pv-xconnect.log")

    def unreachable_lines():
        try:
            return open(log_path).read().count("xconnect_graph_unreachable")
        except FileNotFoundError:
            return 0

    # No socket in a unit test: the first round logs one "unreachable".
    wait_until(lambda: unreachable_lines() == 1)
    pid = listing(client)[0]["pv-xconnect"]["pid"]
    pv_xconnect.pv_commands_run(core=core, op="XCONNECT_GRAPH", payload="")
    wait_until(lambda: open(log_path).read().count("xconnect_reconcile_requested") == 1)
    core.publish("command.finished", "LOCAL_RUN", {"payload": "locals/x", "ok": True})
    wait_until(lambda: open(log_path).read().count("xconnect_reconcile_requested") == 2)
    assert alive(pid)
    assert listing(client)[0]["pv-xconnect"]["pid"] == pid
