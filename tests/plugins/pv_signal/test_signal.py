"""``POST /signal`` (docs/protocol.md §7.5): the one endpoint for non-mgmt containers."""
import subprocess

import pytest

import pv_containers
import pv_signal
from engine_fakes import Clock, FakeRuntime, FakeStorage, RuntimePlugin, run_json, state_of

READY = b'{"type":"ready","payload":""}'


@pytest.fixture(name="leader")
def _leader():
    proc = subprocess.Popen(["sleep", "30"])
    yield proc.pid
    proc.kill()
    proc.wait()


def make(make_core, state, leader=None):
    runtime = FakeRuntime()
    if leader:
        runtime.pid_of["app"] = leader
    core = make_core(plugins=[pv_containers, pv_signal, FakeStorage(state), RuntimePlugin(runtime)],
                     overrides={"containers_clock": Clock()})
    engine = core.stash[pv_containers.ENGINE]
    engine.step()
    return core, engine


def app_state(**fields):
    return state_of(run_json("app", group="app", restart_policy="container", roles=[], **fields))


def test_not_loaded(make_core, make_client):
    core, _ = make(make_core, None)
    result = make_client(core).simulate_post("/signal", body=READY)
    assert (result.status_code, result.json) == (500, {"Error": "State not loaded yet"})


def test_ready_from_unprivileged_container(make_core, make_client, leader):
    core, engine = make(make_core, app_state(status_goal="READY"), leader)
    assert engine.container("app").status.name == "STARTED"
    result = make_client(core, pid=leader).simulate_post("/signal", body=READY)
    assert (result.status_code, result.text, result.headers["content-type"]) == (200, "", "application/json")
    assert engine.container("app").status.name == "READY"  # synchronously
    again = make_client(core, pid=leader).simulate_post("/signal", body=b'{"type":"ready"}')
    assert again.status_code == 200


@pytest.mark.parametrize("body", [READY, b'{"type":"alive","payload":""}'])
def test_not_expected(make_core, make_client, leader, body):
    core, _ = make(make_core, app_state(), leader)  # goal STARTED
    result = make_client(core, pid=leader).simulate_post("/signal", body=body)
    assert (result.status_code, result.json) == (500, {"Error": "Signal not expected from this platform"})


def test_host_signal_fails(make_core, make_client):
    core, _ = make(make_core, app_state(status_goal="READY"))
    result = make_client(core).simulate_post("/signal", body=READY)
    assert (result.status_code, result.json) == (500, {"Error": "Signal not expected from this platform"})


@pytest.mark.parametrize("body,status,message", [
    (b"", 400, "Signal has bad format"),
    (b"{", 400, "Signal has bad format"),
    (b'{"payload":""}', 400, "Signal has bad format"),
    (b'"ready"', 400, "Signal has bad format"),
    (b'{"type":"ready","payload":"' + b"x" * 4096 + b'"}', 507, "Not enough disk space available"),
])
def test_bad_bodies(make_core, make_client, leader, body, status, message):
    core, engine = make(make_core, app_state(status_goal="READY"), leader)
    result = make_client(core, pid=leader).simulate_post("/signal", body=body)
    assert (result.status_code, result.json) == (status, {"Error": message})
    assert engine.container("app").status.name == "STARTED"


def test_other_methods_and_unknown_callers(make_core, make_client):
    core, _ = make(make_core, app_state(status_goal="READY"))
    assert make_client(core).simulate_get("/signal").json == {"Error": "Method not supported for this endpoint"}
    unknown = make_client(core, pid=2 ** 22 + 12345).simulate_post("/signal", body=READY)
    assert unknown.status_code == 500
