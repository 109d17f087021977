"""Resource exhaustion: the storage dir on a full filesystem.

Over the real socket when the sandbox allows a 4 MiB tmpfs (root), and always
in process with the ``free_space`` setting injected. Uploads, revision PUTs
and meta PUTs get 507 ``Not enough disk space available``; nothing torn is
left at a final path; reads keep being served.
"""
import contextlib
import json
import os
import subprocess

import pytest

from pvcore.testing import GunicornServer, short_tempdir, wait_until
from reliability_helpers import (
    all_ready, assert_storage_consistent, get_json, server_processes, sha256, stop_server,
)

NO_SPACE = b'{"Error":"Not enough disk space available"}'
STATE = json.dumps({"#spec": "pantavisor-service-system@1", "full.json": {"pad": "p" * 100_000}}).encode()


def _reads_served(get):
    for path in ("/containers", "/objects", "/steps", "/user-meta", "/steps/current"):
        status, body = get(path)
        assert status == 200, (path, status, body)


def test_full_disk_injected_in_process(make_core, make_client):
    from pvcore_demo import seed

    core = make_core(load_entrypoints=True)
    seed(core)  # a device with its factory revision, before its disk filled up
    core = make_core(load_entrypoints=True, overrides={
        "free_space": lambda path: 0, "storage_dir": core.settings.storage_dir, "run_dir": core.settings.run_dir})
    client = make_client(core)
    data = b"object bytes" * 100
    result = client.simulate_put(f"/objects/{sha256(data)}", body=data)
    assert (result.status_code, result.content) == (507, NO_SPACE)
    result = client.simulate_put("/steps/locals/full", body=STATE)
    assert (result.status_code, result.content) == (507, NO_SPACE)
    storage = core.settings.storage_dir
    assert not os.path.exists(os.path.join(storage, "objects", sha256(data)))
    assert not os.path.exists(os.path.join(storage, "trails", "locals", "full"))
    assert [n for n in os.listdir(os.path.join(storage, "objects")) if n.endswith(".tmp")] == []
    assert [n for n in os.listdir(os.path.join(storage, "trails")) if n.endswith(".tmp")] == []

    def get(path):
        r = client.simulate_get(path)
        return r.status_code, r.content
    status, _ = get("/objects")
    assert status == 200
    for path in ("/objects", "/steps", "/user-meta", "/steps/current"):
        assert get(path)[0] == 200, path


@contextlib.contextmanager
def _device_on_tmpfs(size: str, env):
    """A demo device (not started) whose storage is a tmpfs of ``size``; skips where none can be mounted."""
    base = short_tempdir("pvfull")
    storage = os.path.join(base, "storage")
    os.makedirs(storage)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", storage],
                             capture_output=True).returncode == 0
    if not mounted:
        os.rmdir(storage)
        os.rmdir(base)
        pytest.skip("this sandbox cannot mount a tmpfs (the in-process tests cover the full disk)")
    server = GunicornServer(base, env)
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            subprocess.run(["umount", "-l", storage], check=False)
            stop_server(server)


@pytest.fixture(name="tmpfs_server")
def _tmpfs_server():
    with _device_on_tmpfs("4m", {"PVCORE_DEMO": "1"}) as server:
        server.start(60)
        yield server


@pytest.mark.gunicorn
def test_full_tmpfs_over_the_socket(tmpfs_server):
    server = tmpfs_server
    wait_until(lambda: all_ready(server), 30)
    storage = server.storage_dir
    acked = {}
    # fill the object store until it refuses: every refusal is 507, every object stored is whole
    for i in range(200):
        data = os.urandom(256 * 1024)
        status, _, body = server.request("PUT", f"/objects/{sha256(data)}", data)
        if status == 507:
            assert body == NO_SPACE
            break
        assert status == 200, body
        acked[sha256(data)] = data
    else:
        raise AssertionError("a 4 MiB filesystem never filled up")
    # now take the last bytes too, as another writer on the partition would
    with open(os.path.join(storage, "filler"), "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    data = os.urandom(10_000)
    assert server.request("PUT", f"/objects/{sha256(data)}", data)[::2] == (507, NO_SPACE)
    # a chunked upload (no Content-Length to check up front) fails while writing
    status, _, body = server.request("PUT", f"/objects/{sha256(data)}", iter([data[:5000], data[5000:]]))
    assert (status, body) == (507, NO_SPACE)
    assert server.request("PUT", "/steps/locals/full", STATE)[::2] == (507, NO_SPACE)
    status, _, body = server.request("PUT", "/user-meta/full", b"v" * 4000)
    assert (status, body) == (507, NO_SPACE)
    assert not os.path.exists(os.path.join(storage, "objects", sha256(data)))
    assert server.request("GET", "/steps/locals/full")[0] == 404
    assert "full" not in get_json(server, "/user-meta")
    assert [n for n in os.listdir(os.path.join(storage, "objects")) if n.endswith(".tmp")] == []
    assert_storage_consistent(storage, {"meta": {}, "devmeta": {}})

    def get(path):
        status, _, body = server.request("GET", path)
        return status, body
    _reads_served(get)
    for sha, content in list(acked.items())[:5]:
        status, _, body = server.request("GET", f"/objects/{sha}")
        assert (status, body == content) == (200, True)
    assert all_ready(server)
    # space comes back: writes work again
    os.unlink(os.path.join(storage, "filler"))
    assert server.request("PUT", "/user-meta/full", b"back")[0] == 200
    unhandled = [e for e in server.log_events() if e.get("event") == "unhandled_error"]
    assert unhandled == [], unhandled[:3]


def _fill(storage: str) -> str:
    """Take every free page of the storage tmpfs, as a tenant filling its volume
    does (issue 27): big writes, then page-sized ones, until ENOSPC."""
    path = os.path.join(storage, "filler")
    with open(path, "ab", buffering=0) as fh:
        for chunk in (1 << 20, 65536, 4096):
            try:
                while True:
                    fh.write(b"\0" * chunk)
            except OSError:
                pass
    return path


def _progress_file(storage: str, rev: str) -> dict:
    with open(os.path.join(storage, "trails", rev, ".pv", "progress"), "rb") as fh:
        return json.loads(fh.read())


def _devmeta_file(storage: str, key: str):
    try:
        with open(os.path.join(storage, "cache", "devmeta", key)) as fh:
            return fh.read()
    except FileNotFoundError:
        return None


@pytest.fixture(name="small_storage")
def _small_storage():
    """A demo device whose storage is an 8 MiB tmpfs, its device-meta refreshed every 0.2 s; not started."""
    with _device_on_tmpfs("8m", {"PVCORE_DEMO": "1", "PVCORE_DEVMETA_REFRESH": "0.2"}) as server:
        yield server


def _no_tracebacks(server):
    bad = [e for e in server.log_events()
           if e.get("event") in ("unhandled_error", "revision_transition_crashed", "handoff_failed")]
    assert bad == [], bad[:3]


@pytest.mark.gunicorn
def test_local_run_on_a_full_disk_ends_in_error_and_works_once_space_is_back(small_storage):
    """LOCAL_RUN on a full storage partition is not acknowledged then lost: its
    progress ends ERROR naming the cause, the running revision keeps running,
    the progress reaches the disk once space is back, and a new LOCAL_RUN works."""
    server = small_storage.start(60)
    wait_until(lambda: all_ready(server), 30)
    storage = server.storage_dir
    before = os.readlink(os.path.join(storage, "trails", "current"))
    # the running state under another name: a quick non-reboot transition (nothing restarts)
    state = get_json(server, "/steps/current")
    assert server.request("PUT", "/steps/locals/x", json.dumps(state))[0] == 200
    pids = server_processes(server)
    filler = _fill(storage)

    status, _, body = server.request("POST", "/commands", json.dumps({"op": "LOCAL_RUN", "payload": "locals/x"}))
    assert status == 200, body
    wait_until(lambda: get_json(server, "/steps/locals/x/progress")["status"] == "ERROR", 20)
    progress = get_json(server, "/steps/locals/x/progress")
    assert "No space left on device" in progress["status-msg"], progress
    assert progress["progress"] == 100
    listed = {entry["name"]: entry for entry in get_json(server, "/steps")}
    assert listed["locals/x"]["progress"]["status"] == "ERROR"
    # nothing switched: the same revision, the same processes
    assert os.readlink(os.path.join(storage, "trails", "current")) == before != "locals/x"
    with open(os.path.join(storage, "boot", "pv.json")) as fh:
        assert json.load(fh)["pv_try"] is None
    assert all_ready(server) and server_processes(server) == pids
    assert _progress_file(storage, "locals/x")["status"] == "NEW"  # the disk could not take it

    os.unlink(filler)
    wait_until(lambda: _progress_file(storage, "locals/x")["status"] == "ERROR", 15)
    assert _progress_file(storage, "locals/x") == get_json(server, "/steps/locals/x/progress")
    status, _, body = server.request("POST", "/commands", json.dumps({"op": "LOCAL_RUN", "payload": "locals/x"}))
    assert status == 200, body
    # TESTING: switched and every goal reached; UPDATED follows once the demo's
    # containers are 30 s old (their stable_timeout), which this test does not wait for
    done = ("TESTING", "UPDATED", "ERROR")
    wait_until(lambda: get_json(server, "/steps/locals/x/progress")["status"] in done, 20)
    assert get_json(server, "/steps/locals/x/progress")["status"] in ("TESTING", "UPDATED")
    assert os.readlink(os.path.join(storage, "trails", "current")) == "locals/x"
    assert _progress_file(storage, "locals/x")["status"] in ("TESTING", "UPDATED")
    _no_tracebacks(server)


@pytest.mark.gunicorn
def test_device_status_after_a_restart_on_a_full_disk(small_storage):
    """``pantavisor.status`` is right after pvcore restarts on a full storage
    partition (in memory), and its file catches up once space is back."""
    server = small_storage.start(60)
    wait_until(lambda: all_ready(server), 30)
    storage = server.storage_dir
    wait_until(lambda: get_json(server, "/device-meta").get("pantavisor.status") == "READY", 20)
    wait_until(lambda: _devmeta_file(storage, "pantavisor.status") == "READY", 10)
    server.stop()
    # as a boot cut short right after it recorded STARTING leaves it
    with open(os.path.join(storage, "cache", "devmeta", "pantavisor.status"), "w") as fh:
        fh.write("STARTING")
    filler = _fill(storage)
    server.start(60)
    wait_until(lambda: all_ready(server), 30)
    wait_until(lambda: get_json(server, "/device-meta").get("pantavisor.status") == "READY", 10)
    assert _devmeta_file(storage, "pantavisor.status") == "STARTING"  # the disk could not take it

    os.unlink(filler)
    wait_until(lambda: _devmeta_file(storage, "pantavisor.status") == "READY", 15)
    assert get_json(server, "/device-meta")["pantavisor.status"] == "READY"
    _no_tracebacks(server)
