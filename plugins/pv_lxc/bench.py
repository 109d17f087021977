"""Figure 7 of ``make bench``: how long a container takes from start to READY, per runtime."""
from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from typing import List

from pvcore.bench.figures import row
from pvcore.bench.servers import Server
from pvcore.testing import UnixHTTPConnection, short_tempdir


def _lxc_unavailable() -> str:
    if os.geteuid() != 0:
        return "needs root"
    missing = [t for t in ("lxc-start", "mksquashfs", "busybox", "nc.openbsd") if shutil.which(t) is None]
    return f"missing {missing} (make lxc-tools)" if missing else ""


def _start_to_ready_ms(server: Server, name: str, runs: int) -> List[float]:
    """Stop ``name``, then time ``PUT start`` → ``GET /containers`` showing it READY, ``runs`` times."""
    def status() -> str:
        return {c["name"]: c["status"] for c in json.loads(server.get("/containers"))}[name]

    def put(action: str) -> None:
        conn = UnixHTTPConnection(server.socket)
        assert conn.call("PUT", f"/containers/{name}", json.dumps({"action": action}).encode())[0] == 200
        conn.close()

    samples = []
    for _ in range(runs):
        put("stop")
        while status() != "STOPPED":
            time.sleep(0.01)
        t0 = time.monotonic()
        put("start")
        while status() != "READY":
            time.sleep(0.002)
        samples.append((time.monotonic() - t0) * 1000)
    return samples


def fig_container_start(quick: bool) -> List[dict]:
    """7: start → READY of one container, LXC runtime vs process runtime.

    Both run the same init (pv_lxc's demo: busybox sh, ``nc`` to signal
    READY): the process runtime as a host process, the LXC runtime from its
    squashfs rootfs (loop + overlay mounts, lxc-start, namespaces, cgroups),
    so the ratio is the LXC runtime's own cost. Needs root and the LXC tools.
    """
    reason = _lxc_unavailable()
    if reason:
        print(f"# fig_container_start skipped: {reason}", file=sys.stderr)
        return []
    from pv_lxc import demo

    runs = 3 if quick else 15
    workdir = short_tempdir("pvbl")
    try:
        image = demo.build_rootfs(workdir)
        script = demo.write_init(os.path.join(workdir, "init.sh"))
        state, files = demo.demo_revision(image)
        name = "lxc-server"
        state = {k: v for k, v in state.items() if k.startswith((name + "/", "#"))}
        state[f"{name}/run.json"] = dict(state[f"{name}/run.json"],
                                         exec=[shutil.which("busybox"), "sh", script, "ready"],
                                         restart_policy="container")
        medians = {}
        for runtime in ("process", "lxc"):
            # The demo's values (pretend power: a reboot transition must never
            # reboot the bench machine) without its seeded revision.
            server = Server(env={"PVCORE_DEMO": "1", "PVCORE_DEMO_SEED": "0", "PVCORE_CONTAINER_RUNTIME": runtime,
                                 "PVCORE_UPDATE_COMMIT_DELAY": "0.1"}).start()
            try:
                progress = demo.install(server.socket, "locals/bench", state, files, until=demo.FINAL)
                assert progress["status"] in ("UPDATED", "DONE"), progress
                _start_to_ready_ms(server, name, 1)  # warm caches
                samples = sorted(_start_to_ready_ms(server, name, runs))
                medians[runtime] = (statistics.median(samples), samples[-1])
            finally:
                server.stop()
                shutil.rmtree(server.base, ignore_errors=True)
        return [
            row("7 container start", "start → READY ms, median", medians["lxc"][0], "process runtime",
                medians["process"][0], "", None),
            row("7 container start", "start → READY ms, worst", medians["lxc"][1], "process runtime",
                medians["process"][1], "", None),
        ]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


#: Found by ``python -m pvcore.bench`` through the ``pvcore.bench`` entry-point group.
FIGURES = (fig_container_start,)
