"""Figure 8: a well-behaved client's latency while a container holds hostile connections.

The demo device runs one more container, ``hog`` (mgmt, so its downloads are
allowed), which runs :mod:`pvcore.bench.hostile` on a signal: 64 connections
(quick: 16) that stop mid-request. h2load, one keep-alive client from the
host, measures ``GET /containers`` p99 with none held, then with all held
(docs/architecture.md, "Connections"). Target: at most 2× .
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from typing import List

from pvcore.bench.loadgen import load
from pvcore.bench.servers import Server
from pvcore.testing import UnixHTTPConnection, wait_until

#: Larger than any socket buffer: a download never read holds its thread.
OBJECT_SIZE = 4 << 20


def _call(server: Server, method: str, path: str, body=None):
    conn = UnixHTTPConnection(server.socket, timeout=30)
    try:
        return conn.call(method, path, body)
    finally:
        conn.close()


def _settled(server: Server):
    items = json.loads(server.get("/containers"))
    return items if items and all(c["status"] == c["status_goal"] for c in items) else None


def _add_hog(server: Server, connections: int, sha: str, go: str, ready: str, quick: bool) -> None:
    """Switch the device to its current revision plus the hog container.

    A full run waits for the update to end (no commit while measuring); a
    quick one only for the new revision to run (TESTING: the demo's
    containers take 30 s to be stable)."""
    state = json.loads(server.get("/steps/current"))
    script = ("import os, time\n"
              f"while not os.path.exists({go!r}): time.sleep(0.05)\n"
              "from pvcore.bench.hostile import main\n"
              f"main(['--connections', '{connections}', '--object', '{sha}', '--ready', {ready!r}])\n")
    state["hog/run.json"] = {"#spec": "service-manifest-run@1", "name": "hog", "type": "lxc", "group": "app",
                             "status_goal": "STARTED", "restart_policy": "container", "roles": ["mgmt"],
                             "exec": ["{python}", "-c", script]}
    status, _, body = _call(server, "PUT", "/steps/locals/hog", json.dumps(state).encode())
    if status != 200:
        raise RuntimeError(f"PUT /steps/locals/hog: {status} {body[:200]!r}")
    status, _, body = _call(server, "POST", "/commands",
                            json.dumps({"op": "LOCAL_RUN", "payload": "locals/hog"}).encode())
    if status != 200:
        raise RuntimeError(f"LOCAL_RUN: {status} {body[:200]!r}")
    ends = ("DONE", "UPDATED") + (("TESTING",) if quick else ())
    wait_until(lambda: json.loads(server.get("/steps/locals/hog/progress"))["status"] in ends,
               timeout=60, interval=0.1, message="the switch to locals/hog")
    wait_until(lambda: (lambda items: items and "hog" in {c["name"] for c in items})(_settled(server)),
               timeout=60, interval=0.1, message="the hog container")


def fig_starvation(quick: bool) -> List[dict]:
    """8: GET /containers p99, 1 client, with 64 hostile connections held vs none."""
    from pvcore.bench.figures import row

    seconds = 2 if quick else 10
    connections = 16 if quick else 64
    server = Server().start()
    try:
        wait_until(lambda: _settled(server), timeout=60, interval=0.1, message="the demo containers")
        data = os.urandom(OBJECT_SIZE)
        sha = hashlib.sha256(data).hexdigest()
        status, _, body = _call(server, "PUT", f"/objects/{sha}", data)
        if status != 200:
            raise RuntimeError(f"PUT /objects: {status} {body[:200]!r}")
        go, ready = os.path.join(server.base, "hog-go"), os.path.join(server.base, "hog-ready")
        _add_hog(server, connections, sha, go, ready, quick)

        load(server.socket, "/containers", 1, 1)  # warm-up
        calm = load(server.socket, "/containers", 1, seconds)
        open(go, "w").close()
        opened = wait_until(lambda: os.path.exists(ready) and json.load(open(ready)),
                            timeout=120, interval=0.1, message="the hostile connections")
        if opened["opened"] != connections:
            raise RuntimeError(f"the hog opened {opened}")
        time.sleep(1.0)  # downloads fill their sockets, trickles reach their threads
        held = load(server.socket, "/containers", 1, seconds)
        if calm["errors"] or held["errors"]:
            raise RuntimeError(f"errors under load: {calm} {held}")
        label = f"{connections} hostile conns held"
        return [
            row("8 hostile callers", f"GET /containers p99 ms, 1 client, {label}", held["p99_ms"],
                "none held", calm["p99_ms"], "≤ 2×", lambda v, r: r <= 2),
            row("8 hostile callers", f"GET /containers req/s, 1 client, {label}", held["rps"],
                "none held", calm["rps"], "", None),
        ]
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


STARVATION_FIGURES = (fig_starvation,)
