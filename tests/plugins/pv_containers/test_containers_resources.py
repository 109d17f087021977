"""``GET /containers`` and ``PUT /containers/{name}`` in process (docs/protocol.md §7.1, §7.2)."""
import subprocess

import pytest

from engine_fakes import run_json, state_of

APP = dict(group="app", restart_policy="container")


@pytest.fixture(name="dev")
def _dev(make_device):
    dev = make_device(state_of(run_json("sdk", group="platform"), run_json("client", roles=[], **APP)))
    dev.step(2)
    return dev


def put(client, name, body):
    return client.simulate_put(f"/containers/{name}", body=body)


def test_not_loaded_yet(make_device, make_client):
    dev = make_device(None)
    client = make_client(dev.core)
    for result in (client.simulate_get("/containers"), put(client, "x", b'{"action":"stop"}')):
        assert (result.status_code, result.text) == (500, '{"Error":"State not loaded yet"}')


def test_listing_shape(dev, make_client):
    result = make_client(dev.core).simulate_get("/containers")
    assert result.status_code == 200 and result.headers["content-type"] == "application/json"
    assert result.text == (
        '[{"name":"sdk","group":"platform","status":"STARTED","status_goal":"STARTED",'
        '"restart_policy":"system","roles":["mgmt"]},'
        '{"name":"client","group":"app","status":"STARTED","status_goal":"STARTED",'
        '"restart_policy":"container","roles":[],"auto_recovery":{"policy":"on-failure","max_retries":5,'
        '"current_retries":0,"stable_timeout":30,"is_stable":"false","backoff_policy":"reboot"},'
        '"user_stopped":"false"}]')


def test_policy_no_hides_auto_recovery(make_device):
    dev = make_device(state_of(run_json("c", auto_recovery={"policy": "no"}, **APP)))
    dev.step()
    assert "auto_recovery" not in dev.entry("c") and dev.entry("c")["user_stopped"] == "false"


@pytest.mark.parametrize("name,body,status,message", [
    ("nope", b"x" * 2000, 404, "Container not found"),
    ("sdk", b"not json", 403, "Container has restart_policy 'system' and cannot be controlled via API"),
    ("client", b"{" + b" " * 1024 + b"}", 507, "Not enough disk space available"),
    ("client", b"", 400, "No data"),
    ("client", b"{bad", 400, "Invalid JSON"),
    ("client", b"[]", 400, "Invalid JSON"),
    ("client", b'{"verb":"stop"}', 400, "Missing 'action' field"),
    ("client", b'{"action":"jump"}', 400, "Invalid action. Use 'start', 'stop', or 'restart'"),
    ("client", b'{"action":5}', 400, "Invalid action. Use 'start', 'stop', or 'restart'"),
])
def test_put_check_order(dev, make_client, name, body, status, message):
    result = put(make_client(dev.core), name, body)
    assert (result.status_code, result.json) == (status, {"Error": message})
    assert dev.status("client") == "STARTED"


def test_put_stop_is_asynchronous(dev, make_client):
    body = b'{"action":"stop"}'
    body += b" " * (1024 - len(body))  # exactly the limit is accepted
    result = put(make_client(dev.core), "client", body)
    assert (result.status_code, result.text, result.headers["content-type"]) == (200, "", "application/json")
    assert dev.status("client") == "STARTED"  # the engine does it on its next step
    dev.step()
    assert dev.status("client") == "STOPPED"
    assert dev.entry("client")["user_stopped"] == "true"


def test_put_start_on_blocked_is_refused(make_device, make_client):
    dev = make_device(state_of(run_json("sdk", group="platform"), run_json("client", **APP)))
    dev.step()
    result = put(make_client(dev.core), "client", b'{"action":"start"}')
    assert (result.status_code, result.json) == (
        400, {"Error": "Container must be in STOPPED, STOPPING, or RECOVERING state to start"})


def test_callers_identified_by_their_container_process(make_device, make_client):
    leader = subprocess.Popen(["sleep", "30"])
    try:
        dev = make_device(state_of(run_json("sdk", group="platform"), run_json("client", roles=[], **APP)))
        dev.runtime.pid_of["client"] = leader.pid
        dev.step(2)
        inside = make_client(dev.core, pid=leader.pid)
        result = inside.simulate_get("/containers")
        assert (result.status_code, result.json) == (403, {"Error": "Request not sent from a mgmt platform"})
        assert put(inside, "client", b'{"action":"stop"}').json == {"Error": "Request not sent from mgmt platform"}
        assert dev.core.hook.pvcore_identify_caller(core=dev.core, pid=leader.pid) == "client"
        assert dev.core.hook.pvcore_caller_roles(core=dev.core, name="client") == []
        assert dev.core.hook.pvcore_caller_roles(core=dev.core, name="sdk") == ["mgmt"]
        assert dev.core.hook.pvcore_caller_roles(core=dev.core, name="ghost") is None
        # once the container is stopped its pid no longer identifies anybody
        dev.engine.control("client", "stop")
        dev.step()
        assert dev.engine.identify(leader.pid) is None
    finally:
        leader.kill()
        leader.wait()


def test_host_process_is_not_a_container(dev):
    import os

    assert dev.engine.identify(os.getpid()) is None
    assert dev.core.hook.pvcore_identify_caller(core=dev.core, pid=os.getpid()) == "_pv_"
