"""Helpers shared by the steps tests (and pv_commands', which drive the real pv_steps):
lay revisions down on disk directly, watch the real steps, stand in for the engine."""
import json
import os
import threading
from types import SimpleNamespace
from typing import Optional

import pv_steps
from pvcore import hookimpl

SPEC = "pantavisor-service-system@1"
SHA_A = "a" * 64
SHA_B = "b" * 64


def minimal_state(**extra) -> dict:
    state = {"#spec": SPEC}
    state.update(extra)
    return state


def state_of(*containers: str, **objects: str) -> dict:
    """A revision running ``containers`` (group app), with ``objects`` as extra entries."""
    return {"#spec": SPEC,
            **{f"{name}/run.json": {"name": name, "group": "app"} for name in containers}, **objects}


def make_rev(storage_dir: str, rev: str, state: Optional[dict] = None, progress: Optional[str] = None,
             commitmsg: Optional[bytes] = None) -> str:
    path = os.path.join(storage_dir, "trails", rev)
    os.makedirs(os.path.join(path, ".pvr"), exist_ok=True)
    os.makedirs(os.path.join(path, ".pv"), exist_ok=True)
    with open(os.path.join(path, ".pvr", "json"), "w") as fh:
        json.dump(minimal_state() if state is None else state, fh)
    if progress is not None:
        with open(os.path.join(path, ".pv", "progress"), "w") as fh:
            fh.write(progress)
    if commitmsg is not None:
        with open(os.path.join(path, ".pv", "commitmsg"), "wb") as fh:
            fh.write(commitmsg)
    return path


def put_revision(server, name: str, change) -> dict:
    """Black-box: PUT ``locals/<name>``, revision 0's state after ``change(state)``; the state."""
    status, _, body = server.request("GET", "/steps/0")
    assert status == 200, body
    state = json.loads(body)
    change(state)
    status, _, body = server.request("PUT", f"/steps/locals/{name}", json.dumps(state))
    assert status == 200, body
    return state


def point_current(storage_dir: str, rev: str) -> None:
    link = os.path.join(storage_dir, "trails", "current")
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(rev, link)


def trail(storage_dir: str, *parts: str) -> str:
    return os.path.join(storage_dir, "trails", *parts)


class WatchedSteps:
    """The real pv_steps (which carries out transitions and GC), watched: progress
    writes and boot-record changes in order, and the keep-set of each GC."""

    def __init__(self, core, revisions: Optional[dict] = None):
        self.core = core
        self.steps = core.stash[pv_steps.STEPS]
        self.revisions = revisions
        self.progress = []
        self.calls = []
        self.gc_in_use = None
        trails, steps = self.steps.trails, self.steps
        write_progress, set_running = trails.write_progress, steps.set_running
        commit, make_factory, collect = steps.commit, steps.make_factory, steps.collect

        def record_progress(rev, status, message, logs=None):
            self.progress.append((rev, status, message))
            return write_progress(rev, status, message, logs)

        def record_set_running(rev, try_once=False):
            self.calls.append(("set_running", rev, bool(try_once)))
            return set_running(rev, try_once)

        def record_commit(rev):
            self.calls.append(("commit", rev))
            return commit(rev)

        def record_make_factory(rev):
            self.calls.append(("make_factory", rev))
            return make_factory(rev)

        def record_collect(keep):
            self.gc_in_use = sorted(keep)
            return collect(keep)

        trails.write_progress, steps.set_running = record_progress, record_set_running
        steps.commit, steps.make_factory, steps.collect = record_commit, record_make_factory, record_collect

    @property
    def running(self):
        return self.steps.trails.running()

    @property
    def committed(self):
        return self.steps.boot_state().pv_rev

    def statuses(self, rev):
        return [(status, message) for r, status, message in self.progress if r == rev]

    def last_status(self, rev):
        statuses = self.statuses(rev)
        return statuses[-1][0] if statuses else None


class FakeEngine:
    """Stands in for the container engine: run_revision succeeds unless the revision
    is in ``fail`` (or ``raises``); ``gate`` holds it; stops are counted."""

    def __init__(self):
        self.runs = []
        self.fail = set()
        self.raises = set()
        self.gate = None
        self.running = threading.Event()
        self.stops = 0
        #: what pv_containers_stability_pending answers
        self.unstable = []

    @hookimpl
    def pv_containers_run_revision(self, core, revision, only_changed, timeout):
        rev = revision.rev
        self.runs.append(SimpleNamespace(rev=rev, revision=revision, only_changed=only_changed, timeout=timeout))
        self.running.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test forgot to open the engine gate"
        if rev in self.raises:
            raise RuntimeError("engine exploded")
        if rev in self.fail:
            return False, "Status goal not reached"
        return True, ""

    @hookimpl
    def pv_containers_stability_pending(self, core):
        return list(self.unstable)

    @hookimpl
    def pv_containers_stop(self, core, timeout):
        self.stops += 1
        return True
