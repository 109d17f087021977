"""``GET /groups`` (docs/protocol.md §7.3, docs/protocol.md §D5.3)."""
import pv_containers
import pv_groups
from engine_fakes import Clock, FakeRuntime, FakeStorage, RuntimePlugin, run_json, state_of


def make(make_core, state):
    runtime = FakeRuntime()
    core = make_core(plugins=[pv_containers, pv_groups, FakeStorage(state), RuntimePlugin(runtime)],
                     overrides={"containers_clock": Clock()})
    return core, core.stash[pv_containers.ENGINE], runtime


def test_not_loaded(make_core, make_client):
    core, _, _ = make(make_core, None)
    result = make_client(core).simulate_get("/groups")
    assert (result.status_code, result.text) == (500, '{"Error":"State not loaded yet"}')


def test_custom_groups_with_recovery(make_core, make_client):
    groups = [
        {"name": "base", "status_goal": "READY", "restart_policy": "system"},
        {"name": "apps", "auto_recovery": {"policy": "always", "max_retries": 3, "stable_timeout": 12.5,
                                           "backoff_policy": "1h"}},
        {"name": "quiet", "auto_recovery": {"policy": "no", "max_retries": 3}},
    ]
    core, engine, _ = make(make_core, state_of(run_json("b", group="base"), run_json("x", group="apps"),
                                               groups=groups))
    engine.step()
    result = make_client(core).simulate_get("/groups")
    assert result.status_code == 200 and result.headers["content-type"] == "application/json"
    assert result.text == (
        '[{"name":"base","status_goal":"READY","restart_policy":"system","status":"STARTED"},'
        '{"name":"apps","status_goal":"STARTED","restart_policy":"container","status":"BLOCKED",'
        '"auto_recovery":{"max_retries":3,"stable_timeout":12.5,"backoff_policy":"1h"}},'
        '{"name":"quiet","status_goal":"STARTED","restart_policy":"container","status":"READY"}]')
    engine.signal("b", "ready")
    engine.step()
    statuses = [g["status"] for g in make_client(core).simulate_get("/groups").json]
    assert statuses == ["READY", "READY", "READY"]


def test_group_status_is_lowest_member_missing_its_goal(make_core, make_client):
    core, engine, runtime = make(make_core, state_of(
        run_json("s", group="app"), run_json("r", group="app", status_goal="READY")))
    engine.step()
    app = make_client(core).simulate_get("/groups").json[3]
    assert app["status"] == "STARTED"  # r is STARTED but wants READY
    runtime.procs["s"].exit(1)
    engine.step()
    app = make_client(core).simulate_get("/groups").json[3]
    assert app["status"] == "STARTED"  # a RECOVERING member does not count
