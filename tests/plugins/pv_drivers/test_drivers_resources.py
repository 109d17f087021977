"""/drivers over make_core + make_client, with a fake device and a container caller."""
import json
import os

import pytest

import pv_drivers
from pv_drivers.state import DriverLoadError
from pv_steps.model import build
from pvcore import hookimpl

APP_PID = 4_000_001  # a peer pid only the fake resolver knows
BARE_PID = 4_000_002

STATE = {
    "bsp/drivers.json": {
        "#spec": "driver-aliases@1",
        "all": {"wifi": ["cfg80211", "brcmfmac ${user-meta:wifi.opts}"], "usb-serial": ["usbserial", "ftdi_sio"]},
        "fitconfig:board-b": {"gpu": ["panfrost debug=1"]},
    },
    "app/run.json": {"name": "app", "drivers": {"required": ["usb-serial"], "optional": ["gpu"],
                                                "manual": ["wifi", "ghost"]}},
    "bare/run.json": {"name": "bare"},
}
MODEL = build("0", STATE)


class FakeDevice:
    """Revision state, user meta and callers ("app" and "bare", both mgmt)."""

    def __init__(self, meta=None):
        self.meta = meta

    @hookimpl(tryfirst=True)
    def pvcore_identify_caller(self, core, pid):
        return {APP_PID: "app", BARE_PID: "bare"}.get(pid)

    @hookimpl
    def pvcore_caller_roles(self, core, name):
        return ["mgmt"] if name in ("app", "bare") else None

    @hookimpl
    def pv_steps_revision(self, core, rev):
        return MODEL if rev == "current" else None

    @hookimpl
    def pv_metadata_user(self, core):
        return self.meta


class FailingLoader:
    def __init__(self, bad):
        self.bad = bad
        self.calls = []

    def load(self, module, args=""):
        self.calls.append(("load", module, args))
        return module != self.bad

    def unload(self, module):
        self.calls.append(("unload", module))
        return False


class LoaderPlugin:
    def __init__(self, loader):
        self.loader = loader

    @hookimpl
    def pv_drivers_loader(self, core):
        return self.loader


@pytest.fixture
def device(make_core, make_client):
    def build(meta=None, extra=(), overrides=None):
        core = make_core(plugins=[pv_drivers, FakeDevice(meta), *extra], overrides=overrides)
        return core, make_client(core, pid=APP_PID)

    return build


def dry_calls(core):
    return [call["argv"] for call in core.stash[pv_drivers.DRY_RUN].calls]


def test_get_lists_the_callers_drivers(device):
    core, client = device()
    resp = client.simulate_get("/drivers")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    assert resp.json == [
        {"name": "usb-serial", "type": "REQUIRED", "status": "UNLOADED"},
        {"name": "gpu", "type": "OPTIONAL", "status": "UNKNOWN"},
        {"name": "wifi", "type": "MANUAL", "status": "UNLOADED"},
        {"name": "ghost", "type": "MANUAL", "status": "UNKNOWN"},
    ]


def test_get_is_an_empty_object_for_the_host_and_for_a_container_without_drivers(device, make_client):
    core, _ = device()
    for pid in (None, BARE_PID):
        resp = make_client(core, pid=pid).simulate_get("/drivers")
        assert resp.status_code == 200 and resp.content == b"{}"


def test_fitconfig_section_applies_when_configured(device):
    core, client = device(overrides={"driver_fitconfig": "board-b"})
    statuses = {d["name"]: d["status"] for d in client.simulate_get("/drivers").json}
    assert statuses["gpu"] == "UNLOADED"


def test_load_all_manual_with_user_meta_then_unload(device):
    core, client = device(meta={"wifi.opts": "roamoff=1 feature_disable=0x82000"})
    resp = client.simulate_put("/drivers/load")
    assert resp.status_code == 200 and resp.content == b""
    assert dry_calls(core) == [["modprobe", "cfg80211"],
                               ["modprobe", "brcmfmac", "roamoff=1", "feature_disable=0x82000"]]
    statuses = {d["name"]: d["status"] for d in client.simulate_get("/drivers").json}
    assert statuses == {"usb-serial": "UNLOADED", "gpu": "UNKNOWN", "wifi": "LOADED", "ghost": "UNKNOWN"}
    # already loaded: nothing to do, still 200
    assert client.simulate_put("/drivers/load").status_code == 200
    assert len(dry_calls(core)) == 2
    assert client.simulate_put("/drivers/unload").status_code == 200
    assert dry_calls(core)[2:] == [["modprobe", "-r", "brcmfmac"], ["modprobe", "-r", "cfg80211"]]
    assert {d["name"]: d["status"] for d in client.simulate_get("/drivers").json}["wifi"] == "UNLOADED"
    with open(os.path.join(core.settings.run_dir, "drivers-dryrun.log")) as fh:
        logged = [json.loads(line) for line in fh]
    assert [entry["argv"] for entry in logged] == dry_calls(core)
    assert logged[1]["module"] == "brcmfmac" and logged[1]["args"] == "roamoff=1 feature_disable=0x82000"


def test_missing_user_meta_substitutes_empty(device):
    core, client = device(meta=None)
    assert client.simulate_put("/drivers/wifi/load").status_code == 200
    assert dry_calls(core) == [["modprobe", "cfg80211"], ["modprobe", "brcmfmac"]]


def test_one_driver_load_unload(device):
    core, client = device()
    assert client.simulate_put("/drivers/wifi/load").status_code == 200
    assert {d["name"]: d["status"] for d in client.simulate_get("/drivers").json}["wifi"] == "LOADED"
    assert client.simulate_put("/drivers/wifi/unload").status_code == 200
    assert {d["name"]: d["status"] for d in client.simulate_get("/drivers").json}["wifi"] == "UNLOADED"
    assert len(dry_calls(core)) == 4


def test_load_and_unload_are_published(device):
    core, client = device()
    client.simulate_put("/drivers/wifi/load")
    client.simulate_put("/drivers/wifi/load")  # already loaded: nothing changes
    client.simulate_put("/drivers/wifi/unload")
    replay = client.simulate_get("/_pvcore/events", params={"since": "0", "types": "driver"}).text
    assert [(e["subject"], e["data"]) for e in map(json.loads, replay.splitlines())] == [
        ("wifi", {"old": "UNLOADED", "new": "LOADED"}), ("wifi", {"old": "LOADED", "new": "UNLOADED"})]


@pytest.mark.parametrize("path,status,body", [
    ("/drivers/not-mine/load", 404, {"Error": "Driver not found"}),
    ("/drivers/not-mine/unload", 404, {"Error": "Driver not found"}),
    ("/drivers/load/load", 400, {"Error": "No driver name"}),
    ("/drivers/unload/unload", 400, {"Error": "No driver name"}),
    ("/drivers/usb-serial/load", 200, None),  # required: Pantavisor's, untouched
    ("/drivers/ghost/load", 200, None),  # manual but unknown to the BSP: no-op
])
def test_one_driver_errors_and_no_ops(device, path, status, body):
    core, client = device()
    resp = client.simulate_put(path)
    assert resp.status_code == status
    assert (resp.json if resp.content else None) == body
    assert dry_calls(core) == []


def test_host_put_is_a_no_op_200(device, make_client):
    core, _ = device()
    host = make_client(core)
    assert host.simulate_put("/drivers/load").status_code == 200
    assert host.simulate_put("/drivers/unload").status_code == 200
    assert host.simulate_put("/drivers/wifi/load").status_code == 404
    assert dry_calls(core) == []


def test_load_failure_is_400_and_leaves_the_alias_unloaded(device):
    loader = FailingLoader("brcmfmac")
    core, client = device(extra=[LoaderPlugin(loader)])
    resp = client.simulate_put("/drivers/load")
    assert resp.status_code == 400 and resp.json == {"Error": "Error loading drivers"}
    resp = client.simulate_put("/drivers/wifi/load")
    assert resp.status_code == 400 and resp.json == {"Error": "Error loading driver"}
    assert {d["name"]: d["status"] for d in client.simulate_get("/drivers").json}["wifi"] == "UNLOADED"
    assert ("load", "brcmfmac", "") in loader.calls


def test_unload_failures_are_ignored(device):
    loader = FailingLoader(None)
    core, client = device(extra=[LoaderPlugin(loader)])
    assert client.simulate_put("/drivers/load").status_code == 200
    assert client.simulate_put("/drivers/unload").status_code == 200
    assert loader.calls[-2:] == [("unload", "brcmfmac"), ("unload", "cfg80211")]
    assert {d["name"]: d["status"] for d in client.simulate_get("/drivers").json}["wifi"] == "UNLOADED"


def test_modprobe_loader_runs_the_injected_runner(device):
    ran = []

    def runner(argv):
        ran.append(list(argv))
        return 1 if argv[-1] == "ftdi_sio" else 0

    core, client = device(meta={"wifi.opts": "a=1"}, overrides={"driver_loader": "modprobe", "modprobe_runner": runner})
    assert client.simulate_put("/drivers/load").status_code == 200
    assert client.simulate_put("/drivers/unload").status_code == 200
    assert ran == [["modprobe", "cfg80211"], ["modprobe", "brcmfmac", "a=1"],
                   ["modprobe", "-r", "brcmfmac"], ["modprobe", "-r", "cfg80211"]]
    assert dry_calls(core) == []
    with pytest.raises(DriverLoadError):
        core.hook.pv_containers_starting(core=core, name="app", run=MODEL.containers["app"].run, container=MODEL.containers["app"])


def test_container_starting_loads_required_and_optional(device):
    core, client = device(overrides={"driver_fitconfig": "board-b"})
    core.hook.pv_containers_starting(core=core, name="app", run=MODEL.containers["app"].run, container=MODEL.containers["app"])
    assert dry_calls(core) == [["modprobe", "usbserial"], ["modprobe", "ftdi_sio"], ["modprobe", "panfrost", "debug=1"]]
    statuses = {d["name"]: d["status"] for d in client.simulate_get("/drivers").json}
    assert statuses == {"usb-serial": "LOADED", "gpu": "LOADED", "wifi": "UNLOADED", "ghost": "UNKNOWN"}


def test_failing_optional_driver_does_not_abort_the_start(device):
    loader = FailingLoader("panfrost")
    core, client = device(extra=[LoaderPlugin(loader)], overrides={"driver_fitconfig": "board-b"})
    core.hook.pv_containers_starting(core=core, name="app", run=MODEL.containers["app"].run, container=MODEL.containers["app"])
    assert [c[1] for c in loader.calls] == ["usbserial", "ftdi_sio", "panfrost"]


def test_non_put_methods_are_rejected_by_the_core(device):
    core, client = device()
    resp = client.simulate_get("/drivers/load")
    assert resp.status_code == 400 and resp.json == {"Error": "Method not supported for this endpoint"}
