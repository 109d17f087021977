"""Load with faults: 16 clients of mixed reads and writes while pv-xconnect is
killed every second and a container restarted every few seconds.

Zero failed or wrong answers (every value and object written is read back
intact), and the worker's open fds and RSS do not grow (fds ±5, RSS within
+10% of the figure taken after a warm-up phase).
"""
import os
import random
import signal
import threading
import time

import pytest

from pvcore.testing import wait_until
from reliability_helpers import (
    CLIENT, LONG, all_ready, alive, daemon_pid, sha256, start_server, stop_server,
)

pytestmark = pytest.mark.gunicorn

CLIENTS = 16
DURATION = 120.0 if LONG else 8.0
WARMUP = 15.0 if LONG else 3.0


def _fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def _rss_kb(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Load:
    def __init__(self, server, seconds):
        self.server = server
        self.deadline = time.monotonic() + seconds
        self.requests = 0
        self.failures = []
        self.lock = threading.Lock()

    def fail(self, what):
        with self.lock:
            self.failures.append(what)

    def client(self, index):
        rng = random.Random(index)
        # a fixed pool per client (the same in warm-up and load): the store stops growing after warm-up,
        # so RSS measures leaks, not a longer GET /objects
        pool = [random.Random(index % 100 * 1000 + i).randbytes(1 + i * 2500) for i in range(8)]
        conn = self.server.client(timeout=15)
        mine = {}
        objects = {}
        n = 0
        while time.monotonic() < self.deadline and len(self.failures) < 20:
            op = rng.choice(("containers", "objects", "steps", "meta", "put_meta", "put_object", "get_object"))
            try:
                if op == "put_meta":
                    key, value = f"k{index}-{n % 5}", f"v{index}-{n}"
                    status, _, body = conn.call("PUT", f"/user-meta/{key}", value.encode())
                    if status == 200:
                        mine[key] = value
                elif op == "put_object":
                    data = rng.choice(pool)
                    status, _, body = conn.call("PUT", f"/objects/{sha256(data)}", data)
                    if status == 200:
                        objects[sha256(data)] = len(data)
                elif op == "get_object" and objects:
                    sha = rng.choice(sorted(objects))
                    status, _, body = conn.call("GET", f"/objects/{sha}")
                    if status == 200 and (sha256(body) != sha or len(body) != objects[sha]):
                        self.fail(("object corrupt", sha))
                elif op == "meta":
                    status, _, body = conn.call("GET", "/user-meta")
                    if status == 200:
                        import json
                        listing = json.loads(body)
                        for key, value in mine.items():
                            if listing.get(key) != value:
                                self.fail(("meta lost", key, value, listing.get(key)))
                else:
                    path = {"containers": "/containers", "objects": "/objects", "steps": "/steps",
                            "get_object": "/objects"}[op]
                    status, _, body = conn.call("GET", path)
                if status != 200:
                    self.fail((op, status, body[:200]))
            except Exception as exc:  # a dropped connection is a failure too
                self.fail((op, repr(exc)))
                conn.close()
                conn = self.server.client(timeout=15)
            n += 1
            with self.lock:
                self.requests += 1
        conn.close()


def test_mixed_load_with_daemon_kills_and_container_restarts(long_mode):
    server = start_server()
    try:
        wait_until(lambda: all_ready(server), 30, message="demo READY")
        worker = server.worker_pid()
        warm = Load(server, WARMUP)
        threads = [threading.Thread(target=warm.client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert warm.failures == []
        fds_before, rss_before = _fds(worker), _rss_kb(worker)

        load = Load(server, DURATION)
        threads = [threading.Thread(target=load.client, args=(100 + i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        kills = restarts = 0
        last_restart = time.monotonic()
        while any(t.is_alive() for t in threads):
            pid = daemon_pid(server)
            if pid > 0 and alive(pid):
                os.kill(pid, signal.SIGKILL)
                kills += 1
            if time.monotonic() - last_restart >= 3:
                status, _, body = server.request("PUT", f"/containers/{CLIENT}", b'{"action":"restart"}')
                if status == 200:
                    restarts += 1
                elif status != 400:  # 400: "state does not allow restart" while it is still coming up
                    load.fail(("restart", status, body))
                last_restart = time.monotonic()
            time.sleep(1.0)  # the fault rate, not a synchronisation
        for t in threads:
            t.join()
        assert server.worker_pid() == worker, "the worker died under load"
        # let respawns and restarts settle before measuring
        wait_until(lambda: all_ready(server), 30, message="containers back")
        wait_until(lambda: daemon_pid(server) > 0, 30, message="pv-xconnect respawned")
        fds_after, rss_after = _fds(worker), _rss_kb(worker)
        print(f"\nload: {load.requests} requests by {CLIENTS} clients in {DURATION:.0f}s, {kills} daemon kills, "
              f"{restarts} container restarts, {len(load.failures)} failures; "
              f"fds {fds_before} -> {fds_after}, RSS {rss_before} kB -> {rss_after} kB")
        assert load.failures == [], load.failures[:10]
        # pv-xconnect's respawn throttle leaves it down for a while after each kill: every tick kills it
        # when it is up, so expect a kill per throttle period at least
        assert kills >= max(2, DURATION / 10) and restarts >= 1
        assert abs(fds_after - fds_before) <= 5, (fds_before, fds_after)
        assert rss_after <= rss_before * 1.10, (rss_before, rss_after)
    finally:
        stop_server(server)
