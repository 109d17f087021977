"""Who may have a thread, or a connection, now: the shares of the worker's callers.

Three tiers of callers share the worker (docs/architecture.md, "Connections"):
the **host** (``host_key``), **privileged** callers (a mgmt container: its key
says ``privileged``, see :func:`pvcore.caller.connection_key`) and everyone
else, the **tenants** (non-mgmt containers and unknown callers). Besides
each caller's own cap:

- callers other than the host hold at most three quarters of the threads
  and of the connections: the host always finds one;
- tenants hold at most half of them: however many containers stop
  mid-request, a mgmt container still finds a thread (it is the one that
  installs the update that would remove them).

Requests over a share wait in the poll loop, holding no thread, and are
started in turn when a thread is freed: one per caller, the caller whose
request just ended last, so a caller with requests queued cannot take back
every thread it frees.
"""
from __future__ import annotations

from typing import Hashable


def privileged(key: Hashable) -> bool:
    """Whether caps key ``key`` is a privileged (mgmt) caller's."""
    return getattr(key, "privileged", False)


class PrivilegedKey(str):
    """A mgmt container's caps key: its name, equal to (and hashing as) the plain name."""

    privileged = True


def guests_share(total: int, reserve: int = 1) -> int:
    """How many of ``total`` threads or connections callers other than the
    host may hold together: all but a quarter (at least ``reserve``)."""
    return max(1, total - max(reserve, total // 4))


def tenants_share(total: int) -> int:
    """How many of ``total`` the tenants may hold together: half."""
    return max(1, total // 2)


class ThreadShares:
    """The thread side of the shares, for :class:`pvcore.connections.FairThreadWorker`.

    Expects ``_in_threads``, ``_waiting``, ``_in_thread``, ``host_key`` and
    ``caller_threads`` from the worker, and gunicorn's ``enqueue_req`` and
    ``finish_request`` after it in the method order.
    """

    _guests = 0  # requests in threads of callers other than the host
    _tenants = 0  # ... of which of callers neither the host nor privileged

    def _may_start(self, key) -> bool:
        """Whether caller ``key`` may have one more request in a thread now."""
        if self._in_threads[key] >= self.caller_threads:
            return False
        if self.host_key is None or key == self.host_key:
            return True
        threads = self.cfg.threads
        if self._guests >= guests_share(threads):
            return False
        return privileged(key) or self._tenants < tenants_share(threads)

    def _count(self, key, step: int) -> None:
        if self.host_key is not None and key != self.host_key:
            self._guests += step
            if not privileged(key):
                self._tenants += step

    def _start(self, conn, key) -> None:
        self._in_threads[key] += 1
        self._count(key, 1)
        self._in_thread.add(conn)
        super().enqueue_req(conn)

    def finish_request(self, conn, fs):
        key = getattr(conn, "pv_key", None)
        self._in_thread.discard(conn)
        self._in_threads[key] -= 1
        if self._in_threads[key] <= 0:
            self._in_threads.pop(key, None)
        self._count(key, -1)
        super().finish_request(conn, fs)
        self._start_waiting(key)

    def _start_waiting(self, last) -> None:
        """Start what waits, one request per caller in turn, in line order;
        caller ``last`` (whose request just ended) after the others."""
        started = True
        while started and self._waiting:
            started = False
            line = [k for k in self._waiting if k != last] + ([last] if last in self._waiting else [])
            for key in line:
                waiting = self._waiting[key]
                if waiting and self._may_start(key):
                    self._start(waiting.popleft(), key)
                    started = True
                    if waiting:
                        self._waiting[key] = self._waiting.pop(key)  # to the back of the line
                if not waiting:
                    del self._waiting[key]
