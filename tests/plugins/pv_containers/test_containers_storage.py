"""The process runtime's storage over the real socket: boot storage fresh at every start, revision
storage per revision, permanent storage kept, the ``_config`` overlay (docs/protocol.md §D4.8, §D2.5).

The container counts its starts in each kind of storage and prints what it found; every way a
container restarts — a crash, ``PUT /containers``, a revision switch — must show a fresh boot count.
"""
import hashlib
import json
import os
import signal

import pytest

from engine_server import containers
from pvcore.supervisor import process_running as alive
from pvcore.testing import wait_until

pytestmark = pytest.mark.gunicorn

NAME = "counter"
PROGRAM = r'''
import json, os, time
env = os.environ

def bump(path):
    try:
        with open(path) as fh:
            count = int(fh.read())
    except (OSError, ValueError):
        count = 0
    with open(path, "w") as fh:
        fh.write(str(count + 1))
    return count + 1

report = {"boot": bump(os.path.join(env["PVCORE_BOOT_DIR"], "count"))}
for volume in ("perm", "rev", "scratch"):
    report[volume] = bump(os.path.join(env["PVCORE_VOLUMES_DIR"], volume, "count"))
top = env["PVCORE_CONFIG_DIR"]
report["config"] = {os.path.relpath(os.path.join(d, f), top): open(os.path.join(d, f)).read()
                    for d, _, files in os.walk(top) for f in files}
report["area"] = os.path.dirname(env["PVCORE_BOOT_DIR"])
report["pid"] = os.getpid()
print("REPORT " + json.dumps(report), flush=True)
while True:
    time.sleep(1)
'''
STORAGE = {"lxc-overlay": {"persistence": "boot"}, "perm": {"persistence": "permanent"},
           "rev": {"persistence": "revision"}, "scratch": {"persistence": "boot"}}


def state(conf: bytes):
    run = {"#spec": "service-manifest-run@1", "name": NAME, "type": "lxc", "group": "app",
           "status_goal": "STARTED", "restart_policy": "container", "exec": ["{python}", "-c", PROGRAM],
           "storage": STORAGE,
           "auto_recovery": {"policy": "on-failure", "max_retries": 10, "retry_delay": 0.2}}
    sha = hashlib.sha256(conf).hexdigest()
    return {"#spec": "pantavisor-service-system@1", f"{NAME}/run.json": run,
            f"_config/{NAME}/etc/app.conf": sha,
            f"_config/{NAME}/etc/settings.json": {"level": 3}}, {sha: conf}


def install(server, rev, conf):
    doc, objects = state(conf)
    for sha, data in objects.items():
        assert server.request("PUT", f"/objects/{sha}", data)[0] in (200, 409)
    status, _, raw = server.request("PUT", f"/steps/{rev}", json.dumps(doc).encode())
    assert status == 200, raw
    body = json.dumps({"op": "LOCAL_RUN", "payload": rev}).encode()
    assert server.request("POST", "/commands", body)[0] == 200

    def finished():
        progress = json.loads(server.request("GET", f"/steps/{rev}/progress")[2])
        return progress if progress.get("status") in ("UPDATED", "DONE", "ERROR", "WONTGO") else None
    progress = wait_until(finished, 30, message=f"{rev} installed")
    assert progress["status"] in ("UPDATED", "DONE"), progress


def reports(server, rev):
    path = os.path.join(server.storage_dir, "logs", rev, NAME, "console.log")
    try:
        with open(path) as fh:
            return [json.loads(line[7:]) for line in fh if line.startswith("REPORT ")]
    except FileNotFoundError:
        return []


def next_report(server, rev, seen):
    """The report of the container's next start (after ``seen`` reports of ``rev``)."""
    return wait_until(lambda: len(reports(server, rev)) > seen and reports(server, rev)[seen], 20,
                      message=f"start number {seen + 1} of {rev}")


def counts(report):
    return {key: report[key] for key in ("boot", "perm", "rev", "scratch")}


def test_boot_storage_is_fresh_at_every_start_and_gone_when_stopped(start_gunicorn):
    server = start_gunicorn(env={"PVCORE_STOP_TIMEOUT": "2", "PVCORE_UPDATE_COMMIT_DELAY": "0.3"})
    install(server, "locals/a", b"version 1\n")
    first = next_report(server, "locals/a", 0)
    assert counts(first) == {"boot": 1, "perm": 1, "rev": 1, "scratch": 1}
    # the _config overlay, at its paths: an object, and a JSON document the state holds inline
    assert first["config"] == {"etc/app.conf": "version 1\n", "etc/settings.json": '{"level": 3}'}
    area = first["area"]
    assert area == os.path.join(server.run_dir, "containers", NAME)

    # a crash: auto-recovery starts it again, on fresh boot storage
    os.kill(first["pid"], signal.SIGKILL)
    crashed = next_report(server, "locals/a", 1)
    assert counts(crashed) == {"boot": 1, "perm": 2, "rev": 2, "scratch": 1}

    # a restart through the API
    assert server.request("PUT", f"/containers/{NAME}", b'{"action":"restart"}')[0] == 200
    restarted = next_report(server, "locals/a", 2)
    assert counts(restarted) == {"boot": 1, "perm": 3, "rev": 3, "scratch": 1}

    # STOPPED: this start's directory is gone
    assert server.request("PUT", f"/containers/{NAME}", b'{"action":"stop"}')[0] == 200
    wait_until(lambda: containers(server)[NAME]["status"] == "STOPPED", 10)
    assert not alive(restarted["pid"]) and not os.path.exists(area)
    assert server.request("PUT", f"/containers/{NAME}", b'{"action":"start"}')[0] == 200
    started = next_report(server, "locals/a", 3)
    assert counts(started) == {"boot": 1, "perm": 4, "rev": 4, "scratch": 1}

    # a revision switch: boot storage fresh, revision storage the new revision's, permanent kept
    install(server, "locals/b", b"version 2\n")
    switched = next_report(server, "locals/b", 0)
    assert counts(switched) == {"boot": 1, "perm": 5, "rev": 1, "scratch": 1}
    assert switched["config"]["etc/app.conf"] == "version 2\n"
    old_rev = os.path.join(server.storage_dir, "disks", "rev", "locals", "a", NAME, "rev", "count")
    with open(old_rev) as fh:
        assert fh.read() == "4"  # the old revision's own storage, untouched
    server.stop()
    assert not os.path.exists(os.path.join(server.run_dir, "containers", NAME))
