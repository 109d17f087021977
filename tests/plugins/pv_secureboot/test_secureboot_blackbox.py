"""Secure boot over a real socket (docs/protocol.md §D12): every mode × every case at
``PUT /steps/locals/{name}``, a revision tampered at rest refused by ``LOCAL_RUN``, the
running revision checked at start-up, and the demo still booting in strict mode."""
import hashlib
import json
import os

import pytest

from pvcore.fsutil import atomic_write
from pvcore.testing import GunicornServer, short_tempdir, wait_until
from secureboot_helpers import OEM_NAME, SPEC, app_state, compact, sign, with_signature

pytestmark = pytest.mark.gunicorn

MODES = ("disabled", "audit", "lenient", "strict")
ALL = ["#spec", "bsp/**", "app/**", f"{OEM_NAME}/**"]
V = "Secureboot: Signature validation failed"
U = "Secureboot: State not fully covered by signatures"

#: case → expected PUT error per mode (None: 200), in MODES order
MATRIX = {
    "valid": (None, None, None, None),
    "tampered-value": (None, V, V, V),
    "removed-key": (None, V, V, V),
    "added-uncovered-key": (None, None, None, U),
    "untrusted-chain": (None, V, V, V),
    "expired-leaf": (None, V, V, V),
    "oem-signs-its-app": (None, None, None, None),
    "oem-signs-the-bsp": (None, V, V, V),
    "unsigned": (None, None, None, U),
    "es256": (None, None, None, None),
    "es384-der": (None, None, None, None),
    "es512": (None, None, None, None),
    "on-disk-key": (None, None, None, None),
}


def build(case, pki):
    state = app_state()
    signed = lambda identity, **kw: with_signature(state, "all", sign(state, identity, ALL, **kw))  # noqa: E731
    if case == "valid":
        return signed(pki.rsa)
    if case == "tampered-value":
        return dict(signed(pki.rsa), **{"bsp/kernel.img": "f" * 64})
    if case == "removed-key":
        doc = signed(pki.rsa)
        del doc["app/root.squashfs"]
        return doc
    if case == "added-uncovered-key":
        return dict(signed(pki.rsa), **{"extra/file.txt": "e" * 64})
    if case == "untrusted-chain":
        return signed(pki.untrusted)
    if case == "expired-leaf":
        return signed(pki.expired)
    if case in ("oem-signs-its-app", "oem-signs-the-bsp"):
        oem_part = ["app/**"] if case == "oem-signs-its-app" else ["app/**", "bsp/**"]
        doc = with_signature(state, "bsp", sign(state, pki.rsa, ["#spec", "bsp/**", f"{OEM_NAME}/**"]))
        return with_signature(doc, "app", sign(state, pki.oem, oem_part))
    if case == "unsigned":
        return state
    if case == "es256":
        return signed(pki.ec["ES256"])
    if case == "es384-der":
        return signed(pki.ec["ES384"], der=True)
    if case == "es512":
        return signed(pki.ec["ES512"])
    if case == "on-disk-key":
        return signed(pki.disk, x5c=False)
    raise AssertionError(case)


class Devices:
    """One device per mode, started on first use and shared by the module."""

    def __init__(self, etc_dir):
        self.etc_dir = etc_dir
        self.servers = {}

    def env(self, mode):
        return {"PV_SECUREBOOT_MODE": mode, "PV_SYSTEM_ETCDIR": self.etc_dir, "PV_OEM_NAME": OEM_NAME,
                "PVCORE_UPDATE_COMMIT_DELAY": "0.2"}

    def __getitem__(self, mode):
        if mode not in self.servers:
            server = GunicornServer(short_tempdir(), self.env(mode))
            self.servers[mode] = server
            server.start()
        return self.servers[mode]

    def stop(self):
        for server in self.servers.values():
            server.stop()
            errors = [e for e in server.log_events() if e.get("event") == "unhandled_error"]
            assert errors == [], errors


@pytest.fixture(scope="module")
def devices(etc_dir):
    devices = Devices(etc_dir)
    yield devices
    devices.stop()


def put(server, name, body):
    status, _, data = server.request("PUT", f"/steps/locals/{name}", body)
    return status, (json.loads(data) if data else None)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(MATRIX))
def test_put_matrix(devices, pki, mode, case):
    server = devices[mode]
    expected = MATRIX[case][MODES.index(mode)]
    status, body = put(server, case, compact(build(case, pki)))
    if expected is None:
        assert (status, body) == (200, None)
        assert server.request("GET", f"/steps/locals/{case}")[0] == 200
    else:
        assert (status, body) == (422, {"Error": expected})
        assert server.request("GET", f"/steps/locals/{case}")[0] == 404


def test_refused_reupload_removes_the_revision(devices, pki):
    server = devices["strict"]
    assert put(server, "replaced", compact(build("valid", pki)))[0] == 200
    assert put(server, "replaced", compact(build("tampered-value", pki))) == (422, {"Error": V})
    assert server.request("GET", "/steps/locals/replaced")[0] == 404
    names = [entry["name"] for entry in json.loads(server.request("GET", "/steps")[2])]
    assert "locals/replaced" not in names


def test_json_errors_come_before_signatures(devices):
    assert put(devices["strict"], "garbage", b"{not json") == (422, {"Error": "Parser: State JSON has bad format"})


# -- before a transition runs a revision -------------------------------------------------------


def progress(server, rev):
    status, _, body = server.request("GET", f"/steps/{rev}/progress")
    assert status == 200, body
    return json.loads(body)


def run(server, rev):
    status, _, body = server.request("POST", "/commands", json.dumps({"op": "LOCAL_RUN", "payload": rev}))
    assert status == 200, body
    return wait_until(lambda: (lambda p: p if p["status"] in ("WONTGO", "ERROR", "UPDATED", "DONE") else None)(
        progress(server, rev)), timeout=20, message=f"{rev} to end its transition")


def upload(server, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    status, _, body = server.request("PUT", f"/objects/{sha}", data)
    assert status == 200, body
    return sha


def bsp_state(server, name):
    """A signed revision without containers whose objects are really stored."""
    kernel = upload(server, f"kernel of {name}\n".encode() * 100)
    config = upload(server, f"config of {name}\n".encode())
    return {"#spec": SPEC, f"{OEM_NAME}/default.config": config, "bsp/kernel.img": kernel,
            "bsp/run.json": {"initrd": "pantavisor", "linux": "kernel.img"}}


def test_a_signed_revision_runs(devices, pki):
    server = devices["strict"]
    state = bsp_state(server, "runs")
    assert put(server, "runs", compact(with_signature(state, "all", sign(state, pki.rsa, ALL))))[0] == 200
    # A new BSP: a reboot transition, which ends committed (DONE).
    assert run(server, "locals/runs")["status"] in ("UPDATED", "DONE")


def test_a_revision_tampered_at_rest_wont_go(devices, pki):
    server = devices["lenient"]
    state = bsp_state(server, "at-rest")
    signed = with_signature(state, "all", sign(state, pki.rsa, ALL))
    assert put(server, "at-rest", compact(signed))[0] == 200
    path = os.path.join(server.storage_dir, "trails", "locals", "at-rest", ".pvr", "json")
    atomic_write(path, compact(dict(signed, **{"bsp/run.json": {"initrd": "evil", "linux": "kernel.img"}})))
    done = run(server, "locals/at-rest")
    assert (done["status"], done["status-msg"]) == ("WONTGO", "Signature validation failed")
    assert json.loads(server.request("GET", "/_pvcore/health")[2])["revision"] != "locals/at-rest"
    # Nor does it become the factory revision every rollback ends at.
    status, _, body = server.request("POST", "/commands", json.dumps({"op": "MAKE_FACTORY", "payload": "locals/at-rest"}))
    assert status == 200, body
    wait_until(lambda: any(e.get("event") == "make_factory_failed" for e in server.log_events()), timeout=20,
               message="MAKE_FACTORY to be refused")
    assert server.request("GET", "/steps/0")[0] == 404


def test_a_corrupt_object_is_an_error(devices, pki):
    server = devices["lenient"]
    state = bsp_state(server, "corrupt")
    assert put(server, "corrupt", compact(with_signature(state, "all", sign(state, pki.rsa, ALL))))[0] == 200
    with open(os.path.join(server.storage_dir, "objects", state["bsp/kernel.img"]), "r+b") as fh:
        fh.write(b"K")
    done = run(server, "locals/corrupt")
    assert (done["status"], done["status-msg"]) == ("ERROR", "Object validation went wrong")


# -- the running revision at start-up --------------------------------------------------------


def lay_down(storage, rev, data: bytes, status="DONE"):
    trail = os.path.join(storage, "trails", *rev.split("/"))
    os.makedirs(os.path.join(trail, ".pvr"))
    os.makedirs(os.path.join(trail, ".pv"))
    atomic_write(os.path.join(trail, ".pvr", "json"), data)
    atomic_write(os.path.join(trail, ".pv", "progress"),
                 json.dumps({"status": status, "status-msg": "", "progress": 100, "retries": 0}))


def store(storage, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    os.makedirs(os.path.join(storage, "objects"), exist_ok=True)
    atomic_write(os.path.join(storage, "objects", sha), data)
    return sha


def booted_on_trial(devices, pki, mode, tried: bytes, start_gunicorn):
    """A device whose last update (locals/tried) is being booted again, its rollback point 0."""
    base = short_tempdir()
    storage = os.path.join(base, "storage")
    factory = {"#spec": SPEC, "bsp/kernel.img": store(storage, b"factory kernel"),
               "bsp/run.json": {"initrd": "pantavisor", "linux": "kernel.img"}}
    lay_down(storage, "0", compact(with_signature(factory, "all", sign(factory, pki.rsa, ["#spec", "bsp/**"]))))
    lay_down(storage, "locals/tried", tried, status="UPDATED")
    os.symlink("locals/tried", os.path.join(storage, "trails", "current"))
    os.makedirs(os.path.join(storage, "boot"))
    atomic_write(os.path.join(storage, "boot", "pv.json"),
                 json.dumps({"pv_rev": "0", "pv_try": "locals/tried", "try_once": False}))
    return start_gunicorn(env=devices.env(mode), base=base)


def tried_state(storage_objects):
    return {"#spec": SPEC, "bsp/kernel.img": storage_objects,
            "bsp/run.json": {"initrd": "pantavisor", "linux": "kernel.img"}}


def test_boot_rolls_back_a_tampered_try(devices, pki, start_gunicorn):
    sha = hashlib.sha256(b"factory kernel").hexdigest()
    state = tried_state(sha)
    signed = with_signature(state, "all", sign(state, pki.rsa, ["#spec", "bsp/**"]))
    tampered = compact(dict(signed, **{"bsp/run.json": {"initrd": "evil", "linux": "kernel.img"}}))
    server = booted_on_trial(devices, pki, "lenient", tampered, start_gunicorn)
    assert json.loads(server.request("GET", "/_pvcore/health")[2])["revision"] == "0"
    done = progress(server, "locals/tried")
    assert (done["status"], done["status-msg"]) == ("ERROR", "Signature validation failed")


def test_boot_rolls_back_a_try_with_a_corrupt_object(devices, pki, start_gunicorn):
    base_state = tried_state("c" * 64)  # no such object: stored bytes never hash to it
    signed = compact(with_signature(base_state, "all", sign(base_state, pki.rsa, ["#spec", "bsp/**"])))
    server = booted_on_trial(devices, pki, "strict", signed, start_gunicorn)
    assert json.loads(server.request("GET", "/_pvcore/health")[2])["revision"] == "0"
    done = progress(server, "locals/tried")
    assert (done["status"], done["status-msg"]) == ("ERROR", "Object validation went wrong")


def test_boot_keeps_a_signed_try(devices, pki, start_gunicorn):
    state = tried_state(hashlib.sha256(b"factory kernel").hexdigest())
    signed = compact(with_signature(state, "all", sign(state, pki.rsa, ["#spec", "bsp/**"])))
    server = booted_on_trial(devices, pki, "strict", signed, start_gunicorn)
    assert json.loads(server.request("GET", "/_pvcore/health")[2])["revision"] == "locals/tried"


def test_the_demo_boots_in_strict_mode(devices, pki, start_gunicorn):
    # make run: the seeded factory revision is exempt at boot (docs/protocol.md §12) ...
    server = start_gunicorn(env=devices.env("strict"), demo=True)
    assert json.loads(server.request("GET", "/_pvcore/health")[2])["revision"] == "0"
    wait_until(lambda: json.loads(server.request("GET", "/containers")[2]), timeout=20,
               message="the demo's containers")
    # ... and nothing else is.
    assert put(server, "unsigned", compact(app_state())) == (422, {"Error": U})


def test_a_refused_rollback_point_runs_nothing(devices, start_gunicorn):
    from pvcore_demo import demo_state

    state, objects = demo_state()
    state["pvcore-test/marker.json"] = {"not": "the seed"}
    base = short_tempdir()
    storage = os.path.join(base, "storage")
    for data in objects.values():
        store(storage, data)
    lay_down(storage, "0", compact(state))
    os.symlink("0", os.path.join(storage, "trails", "current"))
    server = start_gunicorn(env=devices.env("strict"), base=base)
    # Upstream's answer while no revision is loaded: nothing of revision 0 runs.
    status, _, body = server.request("GET", "/containers")
    assert (status, json.loads(body)) == (500, {"Error": "State not loaded yet"})
    assert any(e.get("event") == "boot_revision_refused" for e in server.log_events())
    # ... and the device's status says so, not what an earlier boot left.
    status, _, body = server.request("GET", "/device-meta")
    assert json.loads(body)["pantavisor.status"] == "NONE"
