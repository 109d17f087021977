"""pvcore.shares: the host's, the mgmt containers' and the tenants' shares of threads."""
from collections import defaultdict, deque
from types import SimpleNamespace

from pvcore.shares import PrivilegedKey, ThreadShares, guests_share, tenants_share


class Conn:
    def __init__(self, key):
        self.pv_key = key


class Pool:
    """gunicorn's side: what was handed to a thread, in order."""

    def __init__(self):
        self.started = []

    def enqueue_req(self, conn):
        self.started.append(conn)

    def finish_request(self, conn, fs):
        pass


class Worker(ThreadShares, Pool):
    host_key = "_pv_"
    caller_threads = 4

    def __init__(self, threads):
        super().__init__()
        self.cfg = SimpleNamespace(threads=threads)
        self._in_threads, self._waiting, self._in_thread = defaultdict(int), defaultdict(deque), set()

    def request(self, key, n=1):
        for _ in range(n):
            conn = Conn(key)
            if self._waiting.get(key) or not self._may_start(key):
                self._waiting[key].append(conn)
            else:
                self._start(conn, key)


def test_the_shares():
    assert (guests_share(16), tenants_share(16)) == (12, 8)
    assert (guests_share(2), tenants_share(2)) == (1, 1)
    assert guests_share(256, 4) == 192 and guests_share(8, 4) == 4


def test_tenants_hold_half_the_threads_and_leave_a_mgmt_container_its_own():
    worker = Worker(16)
    for name in ("a", "b", "c"):
        worker.request(name, 8)
    assert worker._tenants == 8 and len(worker.started) == 8
    mgmt = PrivilegedKey("m")
    worker.request(mgmt, 2)
    assert [c.pv_key for c in worker.started[-2:]] == ["m", "m"]
    worker.request("_pv_", 4)  # and the host has its own quarter
    assert len(worker.started) == 14


def test_a_freed_thread_goes_to_the_others_first():
    worker = Worker(16)
    worker.request("a", 8)
    worker.request("b", 8)
    assert worker._tenants == 8
    worker.request("c", 1)
    first_a = next(c for c in worker.started if c.pv_key == "a")
    worker.finish_request(first_a, None)
    # a's own queued requests wait: c, which waited too, gets the thread
    assert worker.started[-1].pv_key == "c"
    first_b = next(c for c in worker.started if c.pv_key == "b")
    worker.finish_request(first_b, None)
    assert worker.started[-1].pv_key == "a"  # then in line order, not b again
