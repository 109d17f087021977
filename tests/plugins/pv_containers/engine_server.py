"""Black-box helpers: a real gunicorn serving the demo device (or a custom revision).

The storage plugin provides ``pv_steps_revision``; when it is not
installed (this branch alone), :func:`storage_shim_path` builds a tiny
stand-in distribution that reads ``trails/current`` and ``.pvr/json`` and
gunicorn gets it on ``PYTHONPATH``, so the engine is tested through its hooks
either way.
"""
from __future__ import annotations

import os
import tempfile

from pvcore.plugins import get_plugin_manager

SHIM = '''
import json, os
from pvcore import hookimpl


def _trails(core):
    return os.path.join(core.settings.storage_dir, "trails")


@hookimpl
def pv_steps_running_revision(core):
    try:
        return os.readlink(os.path.join(_trails(core), "current"))
    except OSError:
        return None


@hookimpl
def pv_steps_revision(core, rev):
    from pv_steps.model import build

    if rev == "current":
        rev = pv_steps_running_revision(core)
    try:
        with open(os.path.join(_trails(core), rev, ".pvr", "json")) as fh:
            return build(rev, json.load(fh))
    except (OSError, TypeError, ValueError):
        return None
'''


def storage_shim_path():
    """A PYTHONPATH entry with the stand-in storage plugin, or ``None`` if a real one is installed."""
    pm = get_plugin_manager(load_entrypoints=True, disabled=())
    if pm.hook.pv_steps_revision.get_hookimpls():
        return None
    base = tempfile.mkdtemp(prefix="pvshim")
    with open(os.path.join(base, "pvtest_engine_storage.py"), "w") as fh:
        fh.write(SHIM)
    info = os.path.join(base, "pvtest_engine_storage-0.0.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as fh:
        fh.write("Metadata-Version: 2.1\nName: pvtest-engine-storage\nVersion: 0.0\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as fh:
        fh.write("[pvcore]\npvtest_engine_storage = pvtest_engine_storage\n")
    return base




def children(pid):
    """Pids whose parent is ``pid`` (spawned from any of its threads)."""
    from pvcore.supervisor import proc_stat

    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat and int(stat[1]) == pid:
                found.append(int(entry))
    return found


def container_pids(server):
    """``{container: pid}`` of the live children of gunicorn's worker, from their environment."""
    result = {}
    worker = server.worker_pid()
    for pid in children(worker) if worker else ():
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(b"PVCORE_CONTAINER="):
                result[item.split(b"=", 1)[1].decode()] = pid
    return result


def containers(server):
    """``GET /containers`` as ``{name: entry}``."""
    conn = server.client()
    try:
        status, data = conn.json("GET", "/containers")
    finally:
        conn.close()
    assert status == 200, data
    return {entry["name"]: entry for entry in data}


def all_ready(server):
    """Every container at its goal (the examples READY): the listing, else ``None``."""
    listing = containers(server)
    return listing if all(e["status"] == e["status_goal"] for e in listing.values()) else None
