"""The demo device over the real socket: real gunicorn, real container processes."""
import json
import os
import signal

import pytest

from engine_server import all_ready, container_pids, containers
from pvcore.supervisor import process_running as alive
from pvcore.testing import write_revision
from pvcore.testing import short_tempdir, wait_until

pytestmark = pytest.mark.gunicorn

SERVER = "pv-example-unix-server"
CLIENT = "pv-example-unix-client"
SDK = "pvr-sdk"
APP_RECOVERY = {"policy": "on-failure", "max_retries": 5, "current_retries": 0, "stable_timeout": 30,
                "is_stable": "false", "backoff_policy": "reboot"}


def put(server, name, body):
    status, _, data = server.request("PUT", f"/containers/{name}", body)
    return status, data


def test_examples_reach_ready_by_themselves(demo_server):
    listing = wait_until(lambda: all_ready(demo_server), 20, message="examples READY")
    status, _, raw = demo_server.request("GET", "/containers")
    assert status == 200
    assert json.loads(raw) == [
        {"name": CLIENT, "group": "app", "status": "READY", "status_goal": "READY",
         "restart_policy": "container", "roles": [], "auto_recovery": APP_RECOVERY, "user_stopped": "false"},
        {"name": SERVER, "group": "app", "status": "READY", "status_goal": "READY",
         "restart_policy": "container", "roles": ["mgmt"], "auto_recovery": APP_RECOVERY, "user_stopped": "false"},
        {"name": SDK, "group": "platform", "status": "STARTED", "status_goal": "STARTED",
         "restart_policy": "system", "roles": ["mgmt"]},
    ]
    assert list(listing) == [CLIENT, SERVER, SDK]
    status, _, raw = demo_server.request("GET", "/groups")
    assert status == 200
    assert raw == (
        b'[{"name":"data","status_goal":"MOUNTED","restart_policy":"system","status":"READY"},'
        b'{"name":"root","status_goal":"STARTED","restart_policy":"system","status":"READY"},'
        b'{"name":"platform","status_goal":"STARTED","restart_policy":"system","status":"READY"},'
        b'{"name":"app","status_goal":"STARTED","restart_policy":"container","status":"READY",'
        b'"auto_recovery":{"max_retries":5,"stable_timeout":30,"backoff_policy":"reboot"}}]')
    pids = container_pids(demo_server)
    assert set(pids) == {CLIENT, SERVER, SDK}
    assert all(alive(pid) for pid in pids.values())
    # each example signalled READY itself, through the socket, identified by its process
    signalled = {e.get("caller") for e in demo_server.log_events() if e.get("path") == "/signal"}
    assert {CLIENT, SERVER} <= signalled
    # the host is no container: its signal is not expected
    status, _, raw = demo_server.request("POST", "/signal", b'{"type":"ready","payload":""}')
    assert (status, raw) == (500, b'{"Error":"Signal not expected from this platform"}')
    # system containers cannot be controlled; unknown ones do not exist
    assert put(demo_server, SDK, b'{"action":"stop"}') == (
        403, b'{"Error":"Container has restart_policy \'system\' and cannot be controlled via API"}')
    assert put(demo_server, "nope", b'{"action":"stop"}') == (404, b'{"Error":"Container not found"}')
    assert alive(pids[SDK])


def test_stop_start_restart_change_real_processes(demo_server):
    wait_until(lambda: all_ready(demo_server), 20)
    first = container_pids(demo_server)[CLIENT]
    assert put(demo_server, CLIENT, b'{"action":"stop"}') == (200, b"")
    wait_until(lambda: containers(demo_server)[CLIENT]["status"] == "STOPPED", 10)
    assert not alive(first)
    assert CLIENT not in container_pids(demo_server)
    assert containers(demo_server)[CLIENT]["user_stopped"] == "true"
    assert put(demo_server, CLIENT, b'{"action":"stop"}') == (200, b"")  # already stopped: harmless

    assert put(demo_server, CLIENT, b'{"action":"start"}') == (200, b"")
    listing = wait_until(lambda: all_ready(demo_server), 20)
    assert listing[CLIENT]["user_stopped"] == "false"
    second = container_pids(demo_server)[CLIENT]
    assert second != first and alive(second)

    assert put(demo_server, CLIENT, b'{"action":"restart"}') == (200, b"")
    wait_until(lambda: not alive(second), 10)
    wait_until(lambda: all_ready(demo_server), 20)
    third = container_pids(demo_server)[CLIENT]
    assert third not in (first, second) and alive(third)
    assert alive(container_pids(demo_server)[SERVER])


def test_killed_container_recovers_and_user_stopped_one_does_not(demo_server):
    wait_until(lambda: all_ready(demo_server), 20)
    assert put(demo_server, CLIENT, b'{"action":"stop"}') == (200, b"")
    wait_until(lambda: containers(demo_server)[CLIENT]["status"] == "STOPPED", 10)
    victim = container_pids(demo_server)[SERVER]
    os.kill(victim, signal.SIGKILL)
    entry = wait_until(lambda: (e := containers(demo_server)[SERVER])["status"] == "RECOVERING" and e, 5)
    assert entry["auto_recovery"]["current_retries"] == 1
    # the app group's default backoff: the first retry waits retry_delay (5 s)
    listing = wait_until(lambda: (found := containers(demo_server))[SERVER]["status"] == "READY" and found,
                         15, message="server recovered")
    assert listing[SERVER]["auto_recovery"]["current_retries"] == 1
    fresh = container_pids(demo_server)[SERVER]
    assert fresh != victim and alive(fresh)
    recovering = [e for e in demo_server.log_events() if e.get("event") == "container_recovering"]
    assert recovering and recovering[0]["delay_s"] == 5
    # the user-stopped client stayed down all along
    assert listing[CLIENT]["status"] == "STOPPED"
    assert CLIENT not in container_pids(demo_server)


def test_no_orphan_after_sigterm(demo_server):
    wait_until(lambda: all_ready(demo_server), 20)
    pids = container_pids(demo_server)
    assert len(pids) == 3
    demo_server.stop()
    assert [pid for pid in pids.values() if alive(pid)] == []


def test_worker_killed_new_worker_starts_fresh_containers(demo_server):
    wait_until(lambda: all_ready(demo_server), 20)
    old = container_pids(demo_server)
    worker = demo_server.worker_pid()
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: demo_server.worker_pid() not in (None, worker), 20, message="a new worker")
    demo_server.wait_healthy()
    wait_until(lambda: not any(alive(pid) for pid in old.values()), 10, message="leftovers killed")
    wait_until(lambda: all_ready(demo_server), 20)
    new = container_pids(demo_server)
    assert set(new) == set(old) and not set(new.values()) & set(old.values())
    # With cgroups the leftovers die with their cgroup, else by their recorded process group.
    assert any(e.get("event") in ("leftover_cgroup_killed", "leftover_group_killed")
               for e in demo_server.log_events())


PROBE = r'''
import json, os, socket, sys, time

def call(method, path, body=b""):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(os.environ["PVCORE_CTRL_SOCKET"])
        sock.sendall(b"%s %s HTTP/1.0\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s"
                     % (method, path, len(body), body))
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return [int(head.split()[1]), payload.decode()]

def write(name, result):
    path = os.path.join(sys.argv[1], name)
    with open(path + ".tmp", "w") as fh:
        json.dump(result, fh)
    os.rename(path + ".tmp", path)

name = os.environ["PVCORE_CONTAINER"]
result = {}
for _ in range(200):
    try:
        result["signal"] = call(b"POST", b"/signal", b'{"type":"ready","payload":""}')
        if result["signal"][0] == 200:
            break
    except OSError:
        pass
    time.sleep(0.05)
result["containers"] = call(b"GET", b"/containers")
child = os.fork()
if child == 0:
    os.setsid()  # a grandchild in its own session: only its ancestry ties it to the container
    write(name + ".grandchild", call(b"GET", b"/containers"))
    os._exit(0)
os.waitpid(child, 0)
write(name, result)
while True:
    time.sleep(1)
'''


def test_requests_from_inside_containers(start_gunicorn, device_env):
    base = short_tempdir()
    out = os.path.join(base, "out")
    os.makedirs(out)

    def probe(name, **fields):
        run = {"#spec": "service-manifest-run@1", "name": name, "type": "lxc", "group": "app",
               "status_goal": "READY", "restart_policy": "container", "exec": ["{python}", "-c", PROBE, out]}
        run.update(fields)
        return run

    state = {"#spec": "pantavisor-service-system@1",
             "probe-mgmt/run.json": probe("probe-mgmt"),
             "probe-user/run.json": probe("probe-user", roles=[])}
    write_revision(os.path.join(base, "storage"), state)
    server = start_gunicorn(env=device_env, base=base)
    wait_until(lambda: all_ready(server), 20, message="probes READY")

    def result(name):
        path = os.path.join(out, name)
        return os.path.exists(path) and json.load(open(path))

    user = wait_until(lambda: result("probe-user"), 10)
    assert user["signal"] == [200, ""]
    assert user["containers"] == [403, '{"Error":"Request not sent from a mgmt platform"}']
    assert wait_until(lambda: result("probe-user.grandchild"), 10) == [
        403, '{"Error":"Request not sent from a mgmt platform"}']
    mgmt = wait_until(lambda: result("probe-mgmt"), 10)
    assert mgmt["signal"] == [200, ""]
    assert mgmt["containers"][0] == 200
    assert {e["name"]: e["roles"] for e in json.loads(mgmt["containers"][1])} == {
        "probe-mgmt": ["mgmt"], "probe-user": []}
    assert wait_until(lambda: result("probe-mgmt.grandchild"), 10)[0] == 200


def test_a_platform_container_dead_for_good_is_not_reported_ready(start_gunicorn):
    server = start_gunicorn(demo=True)
    wait_until(lambda: all_ready(server), 20, message="examples READY")

    def groups():
        return {g["name"]: g["status"] for g in json.loads(server.request("GET", "/groups")[2])}

    def device_status():
        return json.loads(server.request("GET", "/device-meta")[2]).get("pantavisor.status")

    wait_until(lambda: device_status() == "READY", 10, message="pantavisor.status READY")
    # pvr-sdk: group platform, restart policy system, no auto-recovery
    os.kill(container_pids(server)[SDK], signal.SIGKILL)
    wait_until(lambda: containers(server)[SDK]["status"] == "STOPPED", 10, message="pvr-sdk stopped")
    assert groups() == {"data": "READY", "root": "READY", "platform": "STOPPED", "app": "READY"}
    wait_until(lambda: device_status() == "STOPPED", 10, message="pantavisor.status to show the failure")
    failed = [e for e in server.log_events() if e.get("event") == "platform_container_failed"]
    assert [e["container"] for e in failed] == [SDK]
    # the event tells the owner of power (a real device reboots); the demo does not
    assert any(e.get("event") == "platform_failed_no_reboot" and e.get("container") == SDK
               for e in server.log_events())
    # the demo device shows the failure instead of tearing the host down
    assert alive(server.worker_pid())
    assert containers(server)[SERVER]["status"] == "READY"
    assert server.request("GET", "/buildinfo")[0] == 200
