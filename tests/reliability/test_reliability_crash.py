"""Crash consistency: ``kill -9`` of the gunicorn worker in the middle of writes.

One demo device serves the whole module; every case kills its worker at a
seeded random point of one operation, lets gunicorn bring a new worker up and
then checks, on disk and over the socket:

* nothing torn at a final path: every object matches its sha, every state
  JSON and progress file parses, every meta file holds a value that was sent;
* every write answered 200 before the kill is there, intact;
* the dead worker's temp and staging files are swept by the new worker;
* no container or daemon process of the dead worker survives: the design is
  "killed and restarted fresh" (``ProcessGroups.kill_leftovers``), not adopted;
* the device is back at the committed revision's containers, all at their goal.
"""
import json
import os
import random
import socket
import threading
import time

import pytest

from pvcore.testing import wait_until
from reliability_helpers import (
    LONG, assert_recovered, assert_storage_consistent, get_json, kill_worker, sha256, start_server,
    stop_server, temp_leftovers, wait_tmp,
)

pytestmark = pytest.mark.gunicorn

SEEDS = list(range(20 if LONG else 3))
SPEC = "pantavisor-service-system@1"
#: every (kind, key) -> set of values ever sent, for the "nothing torn" check
SENT_META = {"meta": {}, "devmeta": {}}


QUICK_GROUPS = os.path.join(os.path.dirname(__file__), "..", "plugins", "pv_steps", "groups_quick.json")


@pytest.fixture(name="device", scope="module")
def _device():
    # GC grace 0: a GC run collects what the test just made unreferenced.
    # Quick groups: upstream's, with a 1 s app stable_timeout, so an update's stability
    # hold (docs/protocol.md §D3.2) does not keep the next case's command waiting 30 s.
    server = start_server(env={"PVCORE_STORAGE_GC_GRACE": "0", "PVCORE_DEFAULT_GROUPS_FILE": QUICK_GROUPS})
    wait_until(lambda: get_json(server, "/containers"), 30)
    yield server
    stop_server(server)


def _partial_put(server, path: str, body: bytes, sent: int) -> socket.socket:
    """Send the headers and the first ``sent`` bytes of ``body``; return the open socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(server.socket)
    sock.sendall(b"PUT %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(body)))
    sock.sendall(body[:sent])
    return sock


def _after_kill(server, dead: int) -> None:
    assert temp_leftovers(server.storage_dir, dead) == [], "temp files of the dead worker were not swept"
    assert_storage_consistent(server.storage_dir, SENT_META)
    assert_recovered(server, dead)


def _random_point(rng: random.Random) -> None:
    # a random point in time, not a synchronisation
    time.sleep(rng.random() * 0.05)


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_during_object_upload(device, seed):
    rng = random.Random(seed)
    acked = {}
    for _ in range(rng.randint(1, 3)):
        data = rng.randbytes(rng.randint(1, 200_000))
        status, _, body = device.request("PUT", f"/objects/{sha256(data)}", data)
        assert status == 200, body
        acked[sha256(data)] = data
    data = rng.randbytes(rng.randint(1 << 20, 4 << 20))
    sha = sha256(data)
    sent = len(data) if rng.random() < 0.25 else rng.randint(0, len(data) - 1)
    worker = device.worker_pid()
    objects = os.path.join(device.storage_dir, "objects")
    final = os.path.join(objects, sha)
    sock = _partial_put(device, f"/objects/{sha}", data, sent)
    try:
        # the upload has begun: its temp file (or, were the store broken, the final path) exists
        wait_until(lambda: os.path.exists(final) or [n for n in os.listdir(objects) if f".{worker}-" in n], 10, 0.01)
        _random_point(rng)
        dead = kill_worker(device)
    finally:
        sock.close()
    if sent < len(data):
        assert not os.path.exists(final), "a partial upload reached its final path"
    _after_kill(device, dead)
    listed = {e["sha256"]: int(e["size"]) for e in get_json(device, "/objects")}
    for known, content in acked.items():
        assert listed.get(known) == len(content)
        status, _, body = device.request("GET", f"/objects/{known}")
        assert (status, sha256(body)) == (200, known)


def _state(rng: random.Random, tag: str) -> bytes:
    return json.dumps({"#spec": SPEC, "reliability.json": {"tag": tag},
                       "pad.json": {"pad": "x" * rng.randint(1 << 20, 3 << 20)}}).encode()


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_during_local_step_put(device, seed):
    rng = random.Random(seed)
    acked = {}
    for i in range(rng.randint(1, 2)):
        name = f"acked-{seed}-{i}"
        body = json.dumps({"#spec": SPEC, "reliability.json": {"seed": seed, "i": i}}).encode()
        status, _, answer = device.request("PUT", f"/steps/locals/{name}", body)
        assert status == 200, answer
        acked[name] = body
    name = f"crash-{seed}"
    if rng.random() < 0.5:  # replacing an existing local revision
        first = json.dumps({"#spec": SPEC, "first.json": {"seed": seed}}).encode()
        assert device.request("PUT", f"/steps/locals/{name}", first)[0] == 200
        acked[name] = first
    body = _state(rng, name)
    sent = len(body) if rng.random() < 0.25 else rng.randint(0, len(body) - 1)
    worker = device.worker_pid()
    sock = _partial_put(device, f"/steps/locals/{name}", body, sent)
    try:
        wait_tmp(os.path.join(device.storage_dir, "trails"), worker)
        _random_point(rng)
        dead = kill_worker(device)
    finally:
        sock.close()
    _after_kill(device, dead)
    for rev, content in acked.items():
        status, _, answer = device.request("GET", f"/steps/locals/{rev}")
        assert status == 200
        if rev == name:  # the interrupted PUT replaced it completely, or not at all
            assert answer in (content, body)
        else:
            assert answer == content
    status, _, answer = device.request("GET", f"/steps/locals/{name}")
    if sent < len(body):
        assert status == 200 if name in acked else status == 404
        assert name not in acked or answer == acked[name]
    names = {e["name"] for e in get_json(device, "/steps")}
    assert {f"locals/{rev}" for rev in acked} <= names


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_during_meta_put(device, seed):
    rng = random.Random(seed)
    acked = {}  # (kind, key) -> last value answered 200
    inflight = {}
    stop = threading.Event()

    def writer():
        conn = device.client(timeout=10)
        n = 0
        while not stop.is_set():
            kind, prefix = rng.choice((("meta", "/user-meta/"), ("devmeta", "/device-meta/")))
            key = f"rel{seed}-k{n % 7}"
            value = f"v{seed}-{n}-{'y' * rng.randint(0, 3000)}".encode()
            SENT_META[kind].setdefault(key, set()).add(value)
            inflight[(kind, key)] = value
            try:
                status, _, _ = conn.call("PUT", prefix + key, value)
            except (OSError, ConnectionError, Exception):
                return
            if status == 200:
                acked[(kind, key)] = value
                del inflight[(kind, key)]
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_until(lambda: len(acked) >= 2, 10)
        time.sleep(rng.random() * 0.3)
        dead = kill_worker(device)
    finally:
        stop.set()
        thread.join(15)
    _after_kill(device, dead)
    listings = {"meta": get_json(device, "/user-meta"), "devmeta": get_json(device, "/device-meta")}
    for (kind, key), value in acked.items():
        shown = listings[kind].get(key)
        allowed = {value.decode()} | ({inflight[(kind, key)].decode()} if (kind, key) in inflight else set())
        assert shown in allowed, (kind, key, shown and shown[:40])


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_during_gc(device, seed):
    rng = random.Random(seed)
    for i in range(rng.randint(3, 8)):
        data = rng.randbytes(rng.randint(1, 300_000))
        assert device.request("PUT", f"/objects/{sha256(data)}", data)[0] == 200
    locals_ = []
    for i in range(rng.randint(1, 3)):
        body = json.dumps({"#spec": SPEC, "gc.json": {"seed": seed, "i": i}}).encode()
        assert device.request("PUT", f"/steps/locals/gc-{seed}-{i}", body)[0] == 200
        locals_.append(f"locals/gc-{seed}-{i}")
    # old remote revisions, as an updater left them an hour ago: GC removes these
    remote = [str(1000 + seed * 10 + i) for i in range(rng.randint(1, 4))]
    for rev in remote:
        _plant_revision(device.storage_dir, rev, rng)
    running = get_json(device, "/steps/current")
    committed = {v for v in running.values() if isinstance(v, str) and len(v) == 64}
    answers = []

    def collect():
        try:
            answers.append(device.request("POST", "/storage/gc")[0])
        except Exception as exc:  # the worker dies under it
            answers.append(exc)

    thread = threading.Thread(target=collect)
    thread.start()
    _random_point(rng)
    dead = kill_worker(device)
    thread.join(15)
    _after_kill(device, dead)
    listed = {e["sha256"] for e in get_json(device, "/objects")}
    assert committed <= listed, "GC interrupted by a crash lost objects of the running revision"
    assert get_json(device, "/steps/current") == running
    names = {e["name"] for e in get_json(device, "/steps")}
    assert set(locals_) <= names, "GC spares revisions written in its grace window"
    if answers and answers[0] == 200:
        assert not set(remote) & names


def _plant_revision(storage: str, rev: str, rng: random.Random) -> None:
    trail = os.path.join(storage, "trails", rev)
    for sub in (".pvr", ".pv", "pad"):
        os.makedirs(os.path.join(trail, sub))
    with open(os.path.join(trail, ".pvr", "json"), "w") as fh:
        json.dump({"#spec": SPEC, "planted.json": {"rev": rev}}, fh)
    with open(os.path.join(trail, ".pv", "progress"), "w") as fh:
        fh.write('{"status":"DONE","status-msg":"old","progress":100,"retries":0}')
    for i in range(rng.randint(50, 400)):  # enough files for the removal to take a while
        with open(os.path.join(trail, "pad", str(i)), "wb") as fh:
            fh.write(b"p" * 512)
    hour_ago = time.time() - 3600  # older than GC's grace window for revisions
    for path in (trail, os.path.join(trail, ".pvr", "json"), os.path.join(trail, ".pv", "progress")):
        os.utime(path, (hour_ago, hour_ago))


def test_acked_meta_keys_shaped_like_temp_files_survive_a_crash(device):
    """Keys are file names: ``.x.tmp`` is a valid key, the startup sweep must not take it for a leftover."""
    keys = {".rel.tmp": b"dot-tmp", "rel.tmp": b"tmp", ".rel": b"hidden"}
    for key, value in keys.items():
        SENT_META["meta"].setdefault(key, set()).add(value)
        assert device.request("PUT", f"/user-meta/{key}", value)[0] == 200
    dead = kill_worker(device)
    _after_kill(device, dead)
    listing = get_json(device, "/user-meta")
    assert {k: listing.get(k) for k in keys} == {k: v.decode() for k, v in keys.items()}


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_during_local_run(device, seed):
    """A transition cut short by a crash falls back to the committed revision."""
    rng = random.Random(seed)
    committed = get_json(device, "/steps/current")
    name = f"locals/run-{seed}"
    state = dict(committed)
    # a changed container (new argv) and one removed: the transition has real work to do.
    # Both have the `container` restart policy: a non-reboot transition, which ends UPDATED
    # (a change to the `system` pvr-sdk would be a reboot transition, committed: §D3.4)
    server = dict(state["pv-example-unix-server/run.json"])
    server["exec"] = list(server["exec"]) + ["--exit-code", str(seed)]
    state["pv-example-unix-server/run.json"] = server
    for key in [k for k in state if k.startswith("pv-example-unix-client/")]:
        del state[key]  # files left of a removed container would be owned by none: a reboot
    assert device.request("PUT", f"/steps/{name}", json.dumps(state))[0] == 200
    status, _, body = device.request("POST", "/commands", json.dumps({"op": "LOCAL_RUN", "payload": name}))
    assert status == 200, body
    wait_until(lambda: get_json(device, f"/steps/{name}/progress")["status"] != "NEW", 20, 0.01)
    _random_point(rng)
    progress_at_kill = get_json(device, f"/steps/{name}/progress")["status"]
    dead = kill_worker(device)
    running = get_json(device, "/steps/current")
    progress = get_json(device, f"/steps/{name}/progress")
    if progress_at_kill in ("INPROGRESS", "TESTING"):
        # interrupted: back at the committed revision, the try recorded as failed
        assert running == committed
        assert (progress["status"], progress["status-msg"]) == ("ERROR", "Unexpected rollback")
    else:  # it had already finished (UPDATED): booted again, as upstream's bootloader would
        assert progress_at_kill == "UPDATED" and running == state
    _after_kill(device, dead)
    if running != committed:  # leave the device at its committed revision for the next case
        assert device.request("POST", "/commands", json.dumps({"op": "LOCAL_RUN", "payload": "0"}))[0] == 200
        wait_until(lambda: get_json(device, "/steps/current") == committed, 30)
        assert_recovered(device, dead)
