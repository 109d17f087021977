"""Bounded memory: the worker's peak RSS stays under 128 MiB (issue 17).

Black-box over the real socket. The worker's peak is its ``VmHWM``, reset
through ``/proc/<pid>/clear_refs`` before each measured step (sampled
``VmRSS`` where the kernel refuses the reset). The states are the kind that
blew up the old parser: many small JSON objects, and a hostile array of
empty arrays (each costs bytes on the wire and a Python list in memory).

Quick forms (``make test``): one 4 MiB state, six 2 MiB states at once, GC
over 60 revisions. Long forms (``make test-long``): one 16 MiB state, six
16 MiB states at once, GC over 1,000 revisions.
"""
import json
import os
import threading
import time

import pytest

from pvcore.bench.memory import many_small_objects
from pvcore.testing import wait_until
from reliability_helpers import LONG, all_ready, get_json, kill_worker, sha256, start_server, stop_server

pytestmark = pytest.mark.gunicorn

MiB = 1 << 20
LIMIT = 128 * MiB
SPEC = "pantavisor-service-system@1"


def empty_arrays(size: int) -> bytes:
    """A valid state whose one config value is ``[[],[],...]``: ~22× its size as Python lists."""
    head = json.dumps({"#spec": SPEC, "app/run.json": {"name": "app"}})[:-1]
    count = max(0, (size - len(head) - 40) // 3)
    return (head + ', "app/_config/x.json": [' + ",".join(["[]"] * count) + "]}").encode()


class PeakRss:
    """The worker's peak RSS over a ``with`` block, in bytes."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = 0
        self._sampling = None

    def _status(self, field: str) -> int:
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} for {self.pid}")

    def __enter__(self):
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current RSS
        except OSError:
            self._stop = threading.Event()
            self._sampling = threading.Thread(target=self._sample, daemon=True)
            self._sampling.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._status("VmRSS"))
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self._sampling:
            self._stop.set()
            self._sampling.join()
        else:
            self.peak = self._status("VmHWM")


def _put(server, path, body, timeout=300):
    conn = server.client(timeout=timeout)
    try:
        return conn.call("PUT", path, body)
    finally:
        conn.close()


@pytest.fixture(name="server", scope="module")
def _server():
    # every local revision is kept: GC must read what they all reference
    server = start_server({"PVCORE_STORAGE_GC_GRACE": "0", "PVCORE_STEPS_GC_KEEP_LOCALS": "1"})
    try:
        wait_until(lambda: all_ready(server), 30)
        yield server
    finally:
        stop_server(server)


def _fresh_worker(server):
    """A worker restarted cold: what it held before does not count."""
    kill_worker(server)
    wait_until(lambda: all_ready(server), 30)
    return server.worker_pid()


@pytest.mark.parametrize("make", [many_small_objects, empty_arrays], ids=["small-objects", "empty-arrays"])
def test_one_large_state_put_stays_under_128_mib(server, make):
    body = make((16 if LONG else 4) * MiB)
    pid = _fresh_worker(server)
    with PeakRss(pid) as rss:
        status, _, reply = _put(server, f"/steps/locals/big-{make.__name__}", body)
    assert (status, reply) == (200, b"")
    assert rss.peak < LIMIT, f"peak RSS {rss.peak / MiB:.0f} MiB"
    status, _, stored = server.request("GET", f"/steps/locals/big-{make.__name__}")
    assert status == 200 and stored == body
    # nothing big is kept afterwards either
    assert PeakRss(pid)._status("VmRSS") < LIMIT


def test_six_concurrent_large_state_puts_stay_under_128_mib(server):
    size = (16 if LONG else 2) * MiB
    bodies = [many_small_objects(size, name=f"c{i}") for i in range(6)]
    pid = _fresh_worker(server)
    replies = {}

    def put(i):
        replies[i] = _put(server, f"/steps/locals/six{i}", bodies[i], timeout=600)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(6)]
    with PeakRss(pid) as rss:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted((status, body) for status, _, body in replies.values()) == [(200, b"")] * 6
    assert rss.peak < LIMIT, f"peak RSS {rss.peak / MiB:.0f} MiB"
    for i in range(6):
        assert server.request("GET", f"/steps/locals/six{i}")[2] == bodies[i]


def test_large_invalid_state_answers_422_in_bounded_memory(server):
    size = (16 if LONG else 4) * MiB - 1024  # room for the faults added below, under the size limit
    # a duplicate key at the very end, after megabytes of valid content
    duplicate = many_small_objects(size)[:-1] + b', "app/run.json": {"name": "app"}}'
    # NaN deep inside, a wrong container name, not an object at all
    nan = many_small_objects(size)[:-1] + b', "app/_config/nan.json": [1, NaN]}'
    unterminated = many_small_objects(size)[:-2]
    pid = _fresh_worker(server)
    for body in (duplicate, nan, unterminated):
        with PeakRss(pid) as rss:
            status, _, reply = _put(server, "/steps/locals/bad", body)
        assert (status, reply) == (422, b'{"Error":"Parser: State JSON has bad format"}')
        assert rss.peak < LIMIT, f"peak RSS {rss.peak / MiB:.0f} MiB"
    assert server.request("GET", "/steps/locals/bad")[0] == 404


def _objects(server):
    return {entry["sha256"] for entry in get_json(server, "/objects")}


def test_gc_over_many_revisions_stays_under_128_mib_and_keeps_their_objects(server):
    revisions = 1000 if LONG else 60
    real = [os.urandom(64) + b"%d" % i for i in range(20)]
    for data in real:
        assert server.request("PUT", f"/objects/{sha256(data)}", data)[0] == 200
    orphan = b"nobody references me"
    assert server.request("PUT", f"/objects/{sha256(orphan)}", orphan)[0] == 200
    # each revision references 2,000 objects from a pool of 4,000 (most absent, as on a hub-fed device)
    pool = [sha256(b"pool %d" % i) for i in range(4000)] + [sha256(d) for d in real]
    for n in range(revisions):
        shas = [pool[(n * 7 + k) % len(pool)] for k in range(2000)] + [sha256(real[n % len(real)])]
        state = many_small_objects(64 * 1024, name="gc", shas=shas)
        assert _put(server, f"/steps/locals/gc{n:04d}", state)[0] == 200
    pid = _fresh_worker(server)
    for run in range(2):
        started = time.monotonic()
        with PeakRss(pid) as rss:
            status, _, body = server.request("POST", "/storage/gc")
        elapsed = time.monotonic() - started
        assert status == 200 and json.loads(body)["reclaimed"] >= (len(orphan) if run == 0 else 0)
        assert rss.peak < LIMIT, f"GC {run}: peak RSS {rss.peak / MiB:.0f} MiB ({elapsed:.1f} s)"
    left = _objects(server)
    assert {sha256(d) for d in real} <= left
    assert sha256(orphan) not in left


def test_gc_reads_the_stored_object_index_not_the_states(server):
    """GC takes a revision's objects from the index written when it was stored.

    The state is rewritten behind pvcore's back (same inode, size and mtime,
    so the index still claims to describe it): a GC that parsed the state
    would find no object in it and delete the one it references.
    """
    data = os.urandom(100)
    assert server.request("PUT", f"/objects/{sha256(data)}", data)[0] == 200
    state = many_small_objects(8 * 1024, name="idx", shas=[sha256(data)])
    assert _put(server, "/steps/locals/indexed", state)[0] == 200
    path = os.path.join(server.storage_dir, "trails", "locals", "indexed", ".pvr", "json")
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.write(b" " * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    _fresh_worker(server)
    assert server.request("POST", "/storage/gc")[0] == 200
    assert sha256(data) in _objects(server)


def test_gc_rebuilds_a_missing_index(server):
    data = os.urandom(100)
    assert server.request("PUT", f"/objects/{sha256(data)}", data)[0] == 200
    state = many_small_objects(8 * 1024, name="rebuilt", shas=[sha256(data)])
    assert _put(server, "/steps/locals/rebuilt", state)[0] == 200
    trail = os.path.join(server.storage_dir, "trails", "locals", "rebuilt")
    index = [n for n in os.listdir(os.path.join(trail, ".pv")) if n.startswith("objects")]
    assert index, os.listdir(os.path.join(trail, ".pv"))
    for name in index:
        os.unlink(os.path.join(trail, ".pv", name))
    _fresh_worker(server)
    assert server.request("POST", "/storage/gc")[0] == 200
    assert sha256(data) in _objects(server)
    assert [n for n in os.listdir(os.path.join(trail, ".pv")) if n.startswith("objects")] == index
