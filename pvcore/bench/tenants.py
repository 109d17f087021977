"""Figures 12 and 13: what a container without privilege can do to the device (issue 27).

* 12 connect flood: the host's ``GET /containers``, a new connection each as
  ``curl`` makes them (:func:`pvcore.bench.flood.probe`), with no flood and
  while a non-mgmt container opens and closes connections from 4 processes
  as fast as it can, through its own socket (``PVCORE_CTRL_SOCKET``, see
  pvcore/ctrlsockets.py). Target: p99 at most 2×, no call failed.
* 13 console: a container writing 256 MiB (quick: 64) to its console as fast
  as it can, through the log pump and its 16 MiB budget, against the same
  writer appending to a file directly; and the log directory's peak size.

The load generator is one sequential client (no pipelining, 5 ms between
calls); its own ceiling is printed against the bare app.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import List

from pvcore.bench.flood import probe
from pvcore.bench.servers import Server
from pvcore.testing import short_tempdir, wait_until, write_revision

MiB = 1 << 20


def _gated(name: str, go: str, code: str) -> dict:
    script = f"import os, time\nwhile not os.path.exists({go!r}): time.sleep(0.05)\n" + code
    return {"#spec": "service-manifest-run@1", "name": name, "type": "lxc", "group": "app",
            "status_goal": "STARTED", "restart_policy": "container", "roles": [],
            "exec": ["{python}", "-c", script]}


def _p99(times: List[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def _device(containers: dict, env=None) -> Server:
    base = short_tempdir("pvbt")
    write_revision(os.path.join(base, "storage"), {"#spec": "pantavisor-service-system@1", **containers})
    return Server(base=base, env=env).start()


def fig_connect_flood(quick: bool) -> List[dict]:
    """12: host GET p99 (new connection each) during a container's connect flood vs none."""
    from pvcore.bench.figures import row

    calls = 200 if quick else 1000
    bare = Server(bare=True).start()
    try:
        t0 = time.monotonic()
        times, _ = probe(bare.socket, calls, pause=0)
        ceiling = len(times) / (time.monotonic() - t0)
    finally:
        bare.stop()
        shutil.rmtree(bare.base, ignore_errors=True)
    base_go = short_tempdir("pvgo")
    go, ready = os.path.join(base_go, "go"), os.path.join(base_go, "ready")
    code = f"from pvcore.bench.flood import main\nmain(['connect', '--procs', '4', '--ready', {ready!r}])\n"
    server = _device({"flood/run.json": _gated("flood", go, code)})
    try:
        probe(server.socket, 20, pause=0.005)  # warm-up
        calm, calm_failed = probe(server.socket, calls, pause=0.005)
        open(go, "w").close()
        wait_until(lambda: os.path.exists(ready), 30, message="the connect flood")
        time.sleep(1.0)
        flooded, flooded_failed = probe(server.socket, calls, pause=0.005)
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)
        shutil.rmtree(base_go, ignore_errors=True)
    return [
        row("12 load generator", "probe ceiling req/s (new connection each), bare app", ceiling, "", None, "", None),
        row("12 connect flood", "host GET /containers p99 ms, new connection each, 4-process flood",
            _p99(flooded) if flooded else float("inf"), "no flood", _p99(calm), "≤ 2×", lambda v, r: r <= 2),
        row("12 connect flood", "host GET /containers p50 ms, 4-process flood", statistics.median(flooded or [0]) * 1000,
            "no flood", statistics.median(calm) * 1000, "", None),
        row("12 connect flood", f"host calls failed (of {calls})", flooded_failed, "no flood", calm_failed,
            "0", lambda v, r: v == 0),
    ]


WRITER = r'''
import os, sys
total, done = int(sys.argv[1]), sys.argv[2]
chunk = (b"x" * 1023 + b"\n") * 64
open(done + ".start", "w").close()
written = 0
while written < total:
    written += os.write(1, chunk)
open(done, "w").close()
'''


def _elapsed(done: str) -> float:
    """Seconds from the writer's first byte to its last (its marker files)."""
    return os.stat(done).st_mtime - os.stat(done + ".start").st_mtime


def fig_console(quick: bool) -> List[dict]:
    """13: console MB/s through the log pump (16 MiB budget) vs appending to a file."""
    from pvcore.bench.figures import row

    total = (64 if quick else 256) * MiB
    scratch = short_tempdir("pvcw")
    try:
        done = os.path.join(scratch, "done")
        with open(os.path.join(scratch, "direct.log"), "ab") as out:
            t0 = time.monotonic()
            subprocess.run([sys.executable, "-c", WRITER, str(total), done], stdout=out, check=True)
        direct = total / MiB / _elapsed(done)
        os.unlink(done)
        os.unlink(done + ".start")
        go = os.path.join(scratch, "go")
        code = WRITER.replace("total, done = int(sys.argv[1]), sys.argv[2]", f"total, done = {total}, {done!r}")
        code += "while True:\n    time.sleep(1)\n"
        server = _device({"talker/run.json": _gated("talker", go, code)})
        logs = os.path.join(server.base, "storage", "logs")
        try:
            peak = 0
            open(go, "w").close()
            t0 = time.monotonic()
            while not os.path.exists(done):
                size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(logs) for f in fs
                           if os.path.exists(os.path.join(d, f)))
                peak = max(peak, size)
                if time.monotonic() - t0 > 300:
                    raise RuntimeError("the console writer did not finish")
                time.sleep(0.01)
            pumped = total / MiB / _elapsed(done)
        finally:
            server.stop()
            shutil.rmtree(server.base, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return [
        row("13 console", f"MB/s, {total // MiB} MiB through the log pump", pumped,
            "append to a file", direct, "≥ 0.1×", lambda v, r: r >= 0.1),
        row("13 console", "log directory peak (MiB), budget 16", peak / MiB, "", None, "≤ 16",
            lambda v, r: v <= 16),
    ]


TENANT_FIGURES = (fig_connect_flood, fig_console)
