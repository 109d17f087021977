"""A container cannot fill storage through its console (docs/architecture.md, "Logs").

Before: a container's output was appended straight to its ``console.log``;
1 GiB in ~8 s filled a 160 MiB storage, uploads, revisions and user-meta got
507 and neither a restart nor GC gave the space back. Here a non-mgmt
container (no privilege) writes 48 MiB to its console as fast as it can,
under a 4 MiB log budget: the log directory never holds more than the
budget, no file more than the per-file size, the logs of a revision no longer
running go first, and uploads keep working.
"""
import hashlib
import json
import os

import pytest

from pvcore.testing import short_tempdir, wait_until, write_revision
from reliability_helpers import start_server, stop_server

pytestmark = pytest.mark.gunicorn

MAXSIZE = 4 << 20
FILE_MAXSIZE = 1 << 20
FLOOD = 48 << 20

FLOODER = r'''
import os, sys
out, total = sys.argv[1], int(sys.argv[2])
chunk = (b"x" * 1023 + b"\n") * 64
written = 0
while written < total:
    written += os.write(1, chunk)
open(os.path.join(out, "done"), "w").close()
import time
while True:
    time.sleep(1)
'''


def _du(root):
    sizes = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            sizes[os.path.relpath(path, root)] = os.lstat(path).st_size
    return sizes


def test_a_console_flood_stays_within_the_log_budget_and_uploads_go_on():
    base = short_tempdir("pvlog")
    out = os.path.join(base, "out")
    os.makedirs(out)
    storage = os.path.join(base, "storage")
    write_revision(storage, {
        "#spec": "pantavisor-service-system@1",
        "flood/run.json": {"#spec": "service-manifest-run@1", "name": "flood", "type": "lxc", "group": "app",
                           "status_goal": "STARTED", "restart_policy": "container", "roles": [],
                           "exec": ["{python}", "-c", FLOODER, out, str(FLOOD)]}})
    logs = os.path.join(storage, "logs")
    # What an earlier revision left: more than the whole budget. A restart gives it back.
    old = os.path.join(logs, "old-rev", "gone", "console.log")
    os.makedirs(os.path.dirname(old))
    with open(old, "wb") as fh:
        fh.write(b"old\n" * (2 * MAXSIZE // 4))
    server = start_server({"PVCORE_LOG_DIR_MAXSIZE": str(MAXSIZE), "PVCORE_LOG_FILE_MAXSIZE": str(FILE_MAXSIZE)},
                          demo=False, base=base)
    try:
        peak = 0

        def flooded():
            nonlocal peak
            peak = max(peak, sum(_du(logs).values()))
            return os.path.exists(os.path.join(out, "done"))

        wait_until(flooded, 120, interval=0.01, message="the container to write its 48 MiB")
        sizes = _du(logs)
        assert not os.path.exists(old)
        assert peak <= MAXSIZE, peak
        assert all(size <= FILE_MAXSIZE for size in sizes.values()), sizes
        console = os.path.join("0", "flood", "console.log")
        assert sizes.get(console, 0) > 0, sizes  # still the live log, and it still shows the latest lines
        status, _, body = server.request("GET", "/_pvcore/logs/flood?tail=2")
        assert status == 200 and body.endswith(b"x\n"), body[-80:]

        data = os.urandom(1 << 20)
        sha = hashlib.sha256(data).hexdigest()
        assert server.request("PUT", f"/objects/{sha}", data)[0] == 200
        assert server.request("PUT", "/user-meta/after-flood", json.dumps("ok"))[0] == 200
    finally:
        stop_server(server)
