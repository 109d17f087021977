"""The seed test plan (shared/seeds/pv-ctrl-testplan.txt), every `pvctl …` line,
run with pvcore's own `pvcontrol` (as a subprocess) against the demo device.

Expected results are the plan's, as corrected by docs/protocol.md §13 (listings
are arrays of objects, `signal ready`/`alive` from the host get 500, …).
"""
import hashlib
import json
import os
import subprocess
import sys
import tarfile

import pytest

from pvcore.testing import GunicornServer, short_tempdir, wait_until

pytestmark = pytest.mark.gunicorn


@pytest.fixture(scope="module")
def device():
    server = GunicornServer(short_tempdir(), {"PVCORE_DEMO": "1"})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pvctl(device, tmp_path):
    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "pvcontrol", "-s", device.socket, *args],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60)
        return proc.returncode, proc.stdout, proc.stderr

    return run


def containers(pvctl):
    rc, out, _ = pvctl("containers", "ls")
    assert rc == 0
    return {c["name"]: c for c in json.loads(out)}


def wait_status(pvctl, name, statuses, timeout=30):
    wait_until(lambda: containers(pvctl)[name]["status"] in statuses, timeout, 0.1, f"{name} in {statuses}")


def test_01_buildinfo(pvctl):
    assert pvctl("buildinfo")[0] == 0


def test_02_containers_list(pvctl):
    wait_status(pvctl, "pv-example-unix-server", {"READY"})
    wait_status(pvctl, "pv-example-unix-client", {"READY"})
    rc, out, _ = pvctl("container", "ls")  # the plan's singular spelling
    assert rc == 0
    items = json.loads(out)
    for item in items:
        assert {"name", "group", "status", "restart_policy", "roles"} <= set(item)
    assert {"pv-example-unix-server", "pv-example-unix-client"} <= {c["name"] for c in items}


def test_03_groups_list(pvctl):
    rc, out, _ = pvctl("groups", "ls")
    assert rc == 0
    assert {"data", "root", "platform", "app"} <= {g["name"] for g in json.loads(out)}


def test_04_05_06_steps(pvctl):
    rc, out, _ = pvctl("steps", "ls")
    assert rc == 0 and "0" in [s["name"] for s in json.loads(out)]
    rc, current, _ = pvctl("steps", "get", "current")
    rc0, zero, _ = pvctl("steps", "get", "0")
    assert rc == rc0 == 0
    assert json.loads(current) == json.loads(zero)
    assert json.loads(zero)["#spec"] == "pantavisor-service-system@1"
    rc, out, _ = pvctl("steps", "show-progress", "0")
    assert rc == 0 and json.loads(out)["status"] == "DONE"


def test_07_configuration(pvctl):
    rc, out, _ = pvctl("config", "ls")
    assert rc == 0
    config = json.loads(out)
    assert "system.init.mode" in config and "log.level" in config
    rc, out, _ = pvctl("conf", "ls")
    assert rc == 0
    keys = {entry["key"] for entry in json.loads(out)}
    assert {"PV_SYSTEM_INIT_MODE", "PV_LOG_LEVEL"} <= keys


@pytest.mark.parametrize("group,endpoint", [("devmeta", "device-meta"), ("usrmeta", "user-meta")])
def test_08_09_metadata_crud(pvctl, device, group, endpoint):
    assert pvctl(group, "ls")[0] == 0
    assert pvctl(group, "save", "test-key", "test-value-123")[0] == 0
    assert json.loads(pvctl(group, "ls")[1])["test-key"] == "test-value-123"
    assert pvctl(group, "save", "test-key", "updated-value-456")[0] == 0
    status, data = device.client().json("GET", f"/{endpoint}")
    assert data["test-key"] == "updated-value-456"
    assert pvctl(group, "delete", "test-key")[0] == 0
    assert "test-key" not in json.loads(pvctl(group, "ls")[1])


def test_10_delete_missing_device_meta_is_404(device):
    status, _, body = device.request("DELETE", "/device-meta/nonexistent-key-xyz")
    assert (status, body) == (404, b'{"Error":"Device meta does not exist"}')


def _listed(pvctl):
    rc, out, _ = pvctl("objects", "ls")
    assert rc == 0
    return {o["sha256"]: o["size"] for o in json.loads(out)}


def test_11_objects_list(pvctl):
    assert len(_listed(pvctl)) > 1


def test_12_13_14_16_objects_put_get(pvctl, tmp_path):
    small = tmp_path / "test-small.txt"
    small.write_text("hello pvctrl test\n")
    big = tmp_path / "test-2mb.bin"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    for path in (small, big):
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        assert pvctl("objects", "put", str(path), sha)[0] == 0
        assert _listed(pvctl)[sha] == str(path.stat().st_size)
        assert pvctl("objects", "put", str(path), sha)[0] == 0  # 16: idempotent
    sha = hashlib.sha256(big.read_bytes()).hexdigest()
    rc, _, _ = pvctl("-f", str(tmp_path / "down.bin"), "objects", "get", sha)
    assert rc == 0
    assert hashlib.sha256((tmp_path / "down.bin").read_bytes()).hexdigest() == sha


def test_15_objects_bad_hash_is_rejected(pvctl, tmp_path):
    bad = tmp_path / "test-badsha.txt"
    bad.write_text("checksum test\n")
    rc, _, err = pvctl("objects", "put", str(bad), "a" * 64)
    assert rc == 60 and '{"Error":"Object has bad checksum"}' in err
    assert "a" * 64 not in _listed(pvctl)


def daemons(pvctl):
    return {d["name"]: d for d in json.loads(pvctl("daemons", "ls")[1])}


def test_17_18_19_20_daemons(pvctl):
    xconnect = wait_until(lambda: daemons(pvctl)["pv-xconnect"]["pid"] > 0 and daemons(pvctl)["pv-xconnect"])
    assert xconnect["respawn"] is True
    old = xconnect["pid"]
    assert pvctl("daemons", "stop", "pv-xconnect")[0] == 0
    stopped = daemons(pvctl)["pv-xconnect"]
    assert stopped["respawn"] is False and stopped["pid"] <= 0
    assert not os.path.exists(f"/proc/{old}") or open(f"/proc/{old}/stat").read().split(") ")[1][0] == "Z"
    assert pvctl("daemons", "start", "pv-xconnect")[0] == 0
    started = wait_until(lambda: daemons(pvctl)["pv-xconnect"]["pid"] > 0 and daemons(pvctl)["pv-xconnect"])
    assert started["respawn"] is True and started["pid"] != old
    rc, _, err = pvctl("daemons", "stop", "nonexistent-daemon")
    assert rc == 255 and '{"Error":"Daemon not found"}' in err


def test_21_xconnect_graph(pvctl):
    rc, out, _ = pvctl("graph", "ls")
    assert rc == 0
    (link,) = json.loads(out)
    assert (link["type"], link["provider"], link["consumer"]) == (
        "unix", "pv-example-unix-server", "pv-example-unix-client")


def test_22_23_drivers(pvctl):
    rc, out, _ = pvctl("drivers", "ls")
    assert (rc, out.strip()) == (0, "{}")  # the host has no drivers of its own
    assert pvctl("drivers", "load")[0] == 0
    assert pvctl("drivers", "unload")[0] == 0


@pytest.mark.parametrize("kind", ["ready", "alive"])
def test_24_25_signals_from_the_host_are_not_expected(pvctl, kind):
    rc, _, err = pvctl("signal", kind)
    assert rc == 255 and '{"Error":"Signal not expected from this platform"}' in err


def test_27_run_gc(pvctl):
    rc, _, _ = pvctl("cmd", "run-gc")
    assert rc in (0, 75)


def test_28_container_stop_start_restart(pvctl):
    assert pvctl("container", "stop", "pv-example-unix-client")[0] == 0
    wait_status(pvctl, "pv-example-unix-client", {"STOPPED"})
    assert pvctl("container", "start", "pv-example-unix-client")[0] == 0
    wait_status(pvctl, "pv-example-unix-client", {"STARTED", "READY"})
    assert pvctl("container", "restart", "pv-example-unix-server")[0] == 0
    wait_status(pvctl, "pv-example-unix-server", {"READY"})


def test_29_steps_install(pvctl, tmp_path):
    rc, state, _ = pvctl("steps", "get", "current")
    (tmp_path / "step").mkdir()
    (tmp_path / "step" / "json").write_text(state)
    (tmp_path / "step" / "objects").mkdir()
    with tarfile.open(tmp_path / "test-step.tgz", "w:gz") as tar:
        tar.add(tmp_path / "step" / "json", "json")
        tar.add(tmp_path / "step" / "objects", "objects")
    rc, out, err = pvctl("-m", "test install", "steps", "install", "test-step.tgz", "locals/test-rev")
    assert rc == 0, err
    assert json.loads(out) == {"revision": "locals/test-rev"}
    listed = {s["name"]: s for s in json.loads(pvctl("steps", "ls")[1])}
    assert listed["locals/test-rev"]["commitmsg"] == "test install"
    # The plan's own tarball holds a bare state.json: not a step package.
    with tarfile.open(tmp_path / "plain.tgz", "w:gz") as tar:
        tar.add(tmp_path / "step" / "json", "state.json")
    assert pvctl("steps", "install", "plain.tgz", "locals/test-rev2")[0] == 1


def test_30_steps_put(pvctl, tmp_path):
    assert pvctl("-f", str(tmp_path / "state.json"), "steps", "get", "current")[0] == 0
    assert pvctl("-m", "test put", "steps", "put", str(tmp_path / "state.json"), "locals/test-put-rev")[0] == 0
    listed = {s["name"]: s for s in json.loads(pvctl("steps", "ls")[1])}
    assert listed["locals/test-put-rev"]["commitmsg"] == "test put"


def test_31_enable_disable_ssh(pvctl):
    assert pvctl("cmd", "enable-ssh")[0] == 0
    wait_until(lambda: daemons(pvctl)["ssh"]["pid"] > 0)
    wait_until(lambda: pvctl("cmd", "disable-ssh")[0] == 0)
    wait_until(lambda: daemons(pvctl)["ssh"]["pid"] <= 0)


def test_26_poweroff_stops_everything(start_gunicorn, tmp_path):
    # A device of its own: the module's device must outlive this test, which
    # may run at any point of the module (pytest-randomly, -p random_order).
    device = start_gunicorn(demo=True)
    def running_link():
        graph = json.loads(device.client().call("GET", "/xconnect-graph")[2])
        return graph and graph[0]["consumer_pid"] > 0 and graph[0]["provider_pid"] > 0 and graph[0]

    link = wait_until(running_link, 30, 0.1, "the xconnect link between running containers")
    container_pids = [link["consumer_pid"], link["provider_pid"]]
    proc = subprocess.run([sys.executable, "-m", "pvcontrol", "-s", device.socket, "cmd", "poweroff",
                           "test shutdown"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    device.proc.wait(60)
    assert not os.path.exists(device.socket)
    for pid in container_pids:
        assert not os.path.exists(f"/proc/{pid}")
