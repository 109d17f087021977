"""Automatic device metadata: probes over a fake /proc and /sys, and the revision hooks."""
import json
import os
import platform

import pytest

import pv_metadata
from pv_metadata.devinfo import DeviceInfo
from pvcore import hookimpl
from pvcore.testing import wait_until


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)


@pytest.fixture
def fake_root(tmp_path):
    root = str(tmp_path / "root")
    write(root, "proc/uptime", "1234.56 999.0\n")
    write(root, "proc/loadavg", "0.50 1.00 2.00 3/123 4567\n")
    write(root, "proc/meminfo", "MemTotal: 1000 kB\nMemFree: 400 kB\nShmem: 10 kB\nBuffers: 20 kB\n"
                                "SwapTotal: 0 kB\nSwapFree: 0 kB\n")
    write(root, "proc/cpuinfo", "processor\t: 0\nmodel name\t: Test CPU 9000\n")
    write(root, "proc/device-tree/model", "Demo Board\x00")
    write(root, "proc/net/if_inet6", "fe800000000000000000000000000001 02 40 20 80     eth0\n")
    write(root, "sys/class/net/eth0/address", "02:00:00:00:00:01\n")
    write(root, "sys/class/net/lo/address", "00:00:00:00:00:00\n")
    return root


def test_collect_from_a_fake_tree(fake_root, tmp_path):
    info = DeviceInfo(fake_root, str(tmp_path), free_space=lambda path: 300, reserved_percent=lambda: 0)
    meta = info.collect()
    assert meta["pantavisor.arch"].startswith(platform.machine() + "/")
    assert meta["pantavisor.arch"].split("/")[2] in ("EL", "EB")
    assert meta["pantavisor.cpumodel"] == "Test CPU 9000"
    assert meta["pantavisor.dtmodel"] == "Demo Board"
    assert meta["pantahub.online"] == "0"
    # Other owners' facts are never probed (docs/architecture.md §2).
    assert not {"pantavisor.revision", "pantavisor.status", "pantavisor.mode", "pantahub.claimed"} & set(meta)
    assert json.loads(meta["sysinfo"]) == {
        "uptime": 1234, "loads.0": 32768, "loads.1": 65536, "loads.2": 131072, "totalram": 1024000,
        "freeram": 409600, "sharedram": 10240, "bufferram": 20480, "totalswap": 0, "freeswap": 0,
        "procs": 123, "totalhigh": 0, "freehigh": 0, "mem_unit": 1,
    }
    assert json.loads(meta["interfaces"]) == {"eth0.ipv6": ["fe80::1"], "eth0.mac": ["02:00:00:00:00:01"]}
    uname = json.loads(meta["pantavisor.uname"])
    assert set(uname) == {"kernel.name", "kernel.release", "kernel.version", "node.name", "machine"}
    assert set(json.loads(meta["time"])) == {"timeval", "timezone"}


def test_storage_uses_the_injected_free_space(tmp_path):
    info = DeviceInfo(str(tmp_path), str(tmp_path), free_space=lambda path: 1000, reserved_percent=lambda: 10)
    storage = json.loads(info.collect()["storage"])
    assert storage["free"] == 1000
    assert storage["reserved"] == storage["total"] // 10
    assert storage["real_free"] == max(1000 - storage["reserved"], 0)


def test_empty_models_and_missing_sources_are_omitted(tmp_path):
    meta = DeviceInfo(str(tmp_path), str(tmp_path), free_space=lambda path: 0).collect()
    for key in ("pantavisor.cpumodel", "pantavisor.dtmodel", "pantavisor.revision"):
        assert key not in meta
    assert meta["interfaces"] == "{}"
    assert meta["sysinfo"] == "{}"


class FakeEngine:
    """Stands in for the storage and engine plugins."""

    def __init__(self):
        self.running = "0"

    @hookimpl
    def pv_steps_running_revision(self, core):
        return self.running


@pytest.fixture
def engine():
    return FakeEngine()


@pytest.fixture
def core(make_core, engine, fake_root):
    return make_core(plugins=[pv_metadata, engine], overrides={"devinfo_root": fake_root})


def test_device_meta_is_populated_when_services_start(core, make_client):
    client = make_client(core)
    assert client.simulate_get("/device-meta").json == {}
    core.start()
    meta = client.simulate_get("/device-meta").json
    for key in ("pantavisor.arch", "pantavisor.version", "pantavisor.dtmodel", "pantavisor.cpumodel",
                "pantahub.online", "pantavisor.uname", "sysinfo", "storage", "time", "interfaces"):
        assert key in meta, key
    assert "pantavisor.revision" not in meta  # pv_steps' fact, from its revision.running event
    assert isinstance(meta["pantavisor.uname"], dict)
    assert set(meta["storage"]) == {"total", "free", "reserved", "real_free"}
    assert os.path.exists(os.path.join(core.settings.storage_dir, "cache", "devmeta", "pantavisor.arch"))


def test_owners_events_write_their_device_meta_keys_on_the_store_thread(core, make_client, engine):
    client = make_client(core)
    core.start()
    core.publish("revision.status", "0", {"status": "READY"})
    wait_until(lambda: client.simulate_get("/device-meta").json.get("pantavisor.status") == "READY")
    core.publish("revision.running", "locals/new", {"old": "0"})
    wait_until(lambda: client.simulate_get("/device-meta").json.get("pantavisor.revision") == "locals/new")


def test_deleted_auto_keys_come_back_at_the_next_refresh(make_core, make_client, fake_root, engine):
    core = make_core(plugins=[pv_metadata, engine], overrides={"devinfo_root": fake_root, "devmeta_refresh": 0.05})
    client = make_client(core)
    core.start()
    assert client.simulate_delete("/device-meta/pantavisor.arch").status_code == 200
    assert client.simulate_delete("/device-meta/sysinfo").status_code == 200
    wait_until(lambda: {"pantavisor.arch", "sysinfo"} <= set(client.simulate_get("/device-meta").json))
