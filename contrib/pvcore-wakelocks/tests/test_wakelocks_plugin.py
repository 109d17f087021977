"""pvcore-wakelocks, tested the way any plugin author would: with pvcore.testing."""
import json
import os

import pytest

import pvcore_wakelocks
from pvcore import hookimpl
from pvcore.testing import ContainerCaller

HELD_NONE = {name: False for name in
             ("boot", "update", "update_check", "devmeta", "usrmeta", "shutdown", "debug_shell", "poll")}


@pytest.fixture
def core(make_core, tmp_path):
    return make_core(plugins=[pvcore_wakelocks], overrides={"wakelocks_sysfs_dir": str(tmp_path / "power")})


def test_reports_the_contract_object(core, make_client):
    resp = make_client(core).simulate_get("/wakelocks")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.json == {"mode": "locks", "count": 0, "degraded": False, "autosleep": False, "settling": False,
                         "polling": False, "run_window": False, "held": HELD_NONE}
    assert list(json.loads(resp.text)) == ["mode", "count", "degraded", "autosleep", "settling", "polling",
                                           "run_window", "held"]


def test_activity_holds_and_releases_through_the_kernel_files(core, make_client, tmp_path):
    core.hook.pvcore_activity(core=core, name="update", active=True)
    core.hook.pvcore_activity(core=core, name="update", active=True)  # nested
    held = make_client(core).simulate_get("/wakelocks").json
    assert held["held"]["update"] is True and held["count"] == 1
    core.hook.pvcore_activity(core=core, name="update", active=False)
    assert make_client(core).simulate_get("/wakelocks").json["held"]["update"] is True
    core.hook.pvcore_activity(core=core, name="update", active=False)
    assert make_client(core).simulate_get("/wakelocks").json["held"]["update"] is False
    assert (tmp_path / "power" / "wake_lock").read_text() == "pvcore-update\n"
    assert (tmp_path / "power" / "wake_unlock").read_text() == "pvcore-update\n"


def test_taking_and_letting_go_a_kernel_lock_are_published(core):
    seen = []

    class Listener:
        @hookimpl
        def pvcore_event(self, core, event):
            seen.append((event.type, event.subject))

    core.pm.register(Listener())
    core.hook.pvcore_activity(core=core, name="update", active=True)
    core.hook.pvcore_activity(core=core, name="update", active=True)  # nested: no new event
    core.hook.pvcore_activity(core=core, name="update", active=False)
    core.hook.pvcore_activity(core=core, name="update", active=False)
    assert seen == [("wakelock.taken", "update"), ("wakelock.released", "update")]


def test_boot_is_held_until_the_revision_is_ready(core, make_client):
    core.start()
    assert make_client(core).simulate_get("/wakelocks").json["held"]["boot"] is True
    core.publish("revision.status", "0", {"status": "STARTED"})
    assert make_client(core).simulate_get("/wakelocks").json["held"]["boot"] is True
    core.publish("revision.status", "0", {"status": "READY"})
    assert make_client(core).simulate_get("/wakelocks").json["held"]["boot"] is False


def test_unwritable_interface_is_reported_degraded(make_core, make_client, tmp_path):
    core = make_core(plugins=[pvcore_wakelocks], overrides={"wakelocks_sysfs_dir": str(tmp_path / "power")})
    (tmp_path / "power" / "wake_lock").unlink()
    (tmp_path / "power" / "wake_lock").mkdir()  # writes now fail
    core.hook.pvcore_activity(core=core, name="shutdown", active=True)
    doc = make_client(core).simulate_get("/wakelocks").json
    assert doc["degraded"] is True and doc["held"]["shutdown"] is True


def test_power_mode_comes_from_configuration(make_core, make_client, tmp_path):
    class Config:
        @hookimpl
        def pvcore_addhooks(self, pluginmanager):
            from pv_config import hookspecs

            pluginmanager.add_hookspecs(hookspecs)

        @hookimpl
        def pv_config_get(self, core, key):
            return 2 if key == "PV_POWER_MODE" else None

    core = make_core(plugins=[pvcore_wakelocks, Config()], overrides={"wakelocks_sysfs_dir": str(tmp_path)})
    assert make_client(core).simulate_get("/wakelocks").json["mode"] == "managed"


def test_mgmt_only(make_core, make_client, tmp_path):
    core = make_core(plugins=[pvcore_wakelocks, ContainerCaller("app", roles=[])],
                     overrides={"wakelocks_sysfs_dir": str(tmp_path)})
    assert make_client(core).simulate_get("/wakelocks").status_code == 403


def test_served_by_real_gunicorn_and_disable_removes_it(start_gunicorn):
    # Named: a suite may load an explicit plugin set (pvcore_plugins), without this one.
    server = start_gunicorn(plugins=["pvcore_wakelocks"])
    status, doc = server.client().json("GET", "/wakelocks")
    assert status == 200 and set(doc["held"]) == set(HELD_NONE)
    status, plugins = server.client().json("GET", "/_pvcore/plugins")
    mine = [p for p in plugins if p["name"] == "pvcore_wakelocks"][0]
    assert mine["distribution"] == "pvcore-wakelocks" and mine["routes"] == ["GET /wakelocks"]
    server.stop()

    off = start_gunicorn(env={"PVCORE_DISABLE_PLUGINS": "pvcore_wakelocks"}, plugins=["pvcore_wakelocks"])
    status, _, body = off.request("GET", "/wakelocks")
    assert (status, body) == (400, b'{"Error":"unknown endpoint: /wakelocks"}')


def test_update_lock_is_held_during_a_local_run_on_the_demo_device(start_gunicorn):
    from pvcore.testing import wait_until

    # upstream's default groups with a 1 s app stable_timeout: the commit is held that long, not 30 s
    quick_groups = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "plugins", "pv_steps",
                                "groups_quick.json")
    server = start_gunicorn(demo=True, env={"PVCORE_UPDATE_COMMIT_DELAY": "1",
                                            "PVCORE_DEFAULT_GROUPS_FILE": quick_groups},
                            plugins=["pvcore_wakelocks"])

    def get(path):
        status, _, body = server.request("GET", path)
        assert status == 200, body
        return json.loads(body)

    state = get("/steps/0")
    # a container-policy container: a non-reboot transition, which ends UPDATED (docs/protocol.md §D3.4)
    server_run = state["pv-example-unix-server/run.json"]
    server_run["exec"] = server_run["exec"] + ["--exit-code", "0"]
    assert server.request("PUT", "/steps/locals/wl", json.dumps(state))[0] == 200
    assert server.request("POST", "/commands", json.dumps({"op": "LOCAL_RUN", "payload": "locals/wl"}))[0] == 200
    wait_until(lambda: get("/wakelocks")["held"]["update"], timeout=20, message="update lock held")
    wait_until(lambda: get("/steps/locals/wl/progress")["status"] in ("UPDATED", "DONE", "ERROR", "WONTGO"),
               timeout=40, message="the transition to end")
    assert get("/steps/locals/wl/progress")["status"] == "UPDATED"
    wait_until(lambda: not get("/wakelocks")["held"]["update"], timeout=10, message="update lock released")
    sysfs = os.path.join(server.base, "var", "sys", "power")
    assert "pvcore-update" in open(os.path.join(sysfs, "wake_lock")).read().split()
    assert "pvcore-update" in open(os.path.join(sysfs, "wake_unlock")).read().split()
