"""Figure 9 of ``make bench``: the worker's peak memory under large states, and GC's cost.

Peaks are ``VmHWM`` of the worker, reset before each step; the baseline is
the same worker's RSS just before the step (so the ratio is how much the step
lifted it). GC's time is set against reading every stored state once (the
least a GC that parsed them would do).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
from typing import List

from pvcore.bench.figures import row
from pvcore.bench.servers import Server, reset_peak, status_kib
from pvcore.testing import UnixHTTPConnection, child_pids

MiB = 1 << 20
LIMIT_MIB = 128


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def many_small_objects(size: int, name: str = "app", shas=()) -> bytes:
    """A valid state of at most ``size`` bytes: one container and ``size / 40`` small config objects
    (the kind that blew up the old parser), with ``shas`` as its objects. The memory tests use it too."""
    head = {"#spec": "pantavisor-service-system@1",
            f"{name}/run.json": {"name": name, "type": "lxc", "root-volume": "root.squashfs"}}
    for i, sha in enumerate(shas):
        head[f"{name}/blob{i}"] = sha
    parts = [json.dumps(head)[:-1]]
    total = len(parts[0])
    i = 0
    while True:
        part = f', "{name}/_config/f{i:07d}.json": {{"i": {i}, "on": true}}'
        if total + len(part) + 1 > size:
            break
        parts.append(part)
        total += len(part)
        i += 1
    parts.append("}")
    return "".join(parts).encode()


def _call(server: Server, method: str, path: str, body=None):
    conn = UnixHTTPConnection(server.socket, timeout=600)
    try:
        status, _, data = conn.call(method, path, body)
    finally:
        conn.close()
    if status != 200:
        raise RuntimeError(f"{method} {path}: {status} {data[:200]!r}")
    return data


def _peak_mib(server: Server, step):
    pid = server.worker_pid()
    before = status_kib(pid, "VmRSS") / 1024
    reset_peak(pid)
    t0 = time.monotonic()
    step()
    seconds = time.monotonic() - t0
    return status_kib(pid, "VmHWM") / 1024, before, seconds


def _restart_worker(server: Server, timeout: float = 60.0) -> None:
    """``kill -9`` the worker and wait for its replacement to answer."""
    old = server.worker_pid()
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while True:
        pids = child_pids(server.proc.pid)
        if pids and pids[0] != old:
            try:
                _call(server, "GET", "/buildinfo")
                return
            except (OSError, RuntimeError):
                pass
        if time.monotonic() > deadline:
            raise RuntimeError("no new worker")
        time.sleep(0.05)


def fig_memory(quick: bool) -> List[dict]:
    """9: peak worker RSS for one 16 MiB state PUT, and GC over 1,000 revisions (time, peak RSS)."""
    revisions = 100 if quick else 1000
    rows = []
    server = Server(env={"PVCORE_STORAGE_GC_GRACE": "0"}).start()
    try:
        big = many_small_objects(16 * MiB)
        peak, before, seconds = _peak_mib(server, lambda: _call(server, "PUT", "/steps/locals/big", big))
        rows.append(row("9 memory", "peak RSS, one 16 MiB state PUT (MiB)", peak, "RSS before", before,
                        f"< {LIMIT_MIB} MiB", lambda v, r: v < LIMIT_MIB))
        rows.append(row("9 memory", "one 16 MiB state PUT (s)", seconds, "", None, "", None))
        pool = [_sha(b"pool %d" % i) for i in range(4000)]
        for n in range(revisions):
            shas = [pool[(n * 7 + k) % len(pool)] for k in range(2000)]
            _call(server, "PUT", f"/steps/locals/gc{n:04d}", many_small_objects(64 * 1024, "gc", shas))
        # a cold worker: nothing remembered from the PUTs
        _restart_worker(server)
        trails = os.path.join(server.base, "storage", "trails", "locals")
        t0 = time.monotonic()
        for name in os.listdir(trails):
            with open(os.path.join(trails, name, ".pvr", "json"), "rb") as fh:
                while fh.read(MiB):
                    pass
        read_all = time.monotonic() - t0
        peak, before, seconds = _peak_mib(server, lambda: _call(server, "POST", "/storage/gc"))
        rows.append(row("9 memory", f"peak RSS, GC over {revisions} revisions (MiB)", peak, "RSS before", before,
                        f"< {LIMIT_MIB} MiB", lambda v, r: v < LIMIT_MIB))
        rows.append(row("9 memory", f"GC over {revisions} revisions (s)", seconds, "read every state",
                        read_all, "", None))
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)
    return rows


MEMORY_FIGURES = (fig_memory,)
