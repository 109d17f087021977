"""Stand-ins for other plugins in the engine's unit tests: storage, runtime, clock."""
from __future__ import annotations

import itertools

from pv_steps.model import build

from pvcore import hookimpl

SPEC = "pantavisor-service-system@1"
#: fake pids no real process can have (above the kernel's pid_max ceiling)
_PIDS = itertools.count(5_000_000)


def run_json(name, **fields):
    run = {"#spec": "service-manifest-run@1", "name": name, "type": "lxc"}
    run.update(fields)
    return run


def state_of(*runs, groups=None):
    """A state JSON holding ``runs`` (run.json dicts) and optional device.json groups."""
    state = {"#spec": SPEC}
    if groups is not None:
        state["device.json"] = {"groups": groups}
    for run in runs:
        state[run["name"] + "/run.json"] = run
    return state


def model_of(rev, state):
    """The revision model the owner of revisions hands the engine (``pv_steps_revision``)."""
    return build(rev, state)


class FakeStorage:
    """Stands in for the owner of revisions: hands ``state`` to the engine at start-up
    (``pv_containers_load``) and answers ``pv_steps_revision`` from memory."""

    def __init__(self, state=None, rev="0"):
        self.rev = rev
        self.state = state

    @hookimpl(trylast=True)
    def pvcore_startup(self, core):
        if self.state is not None:
            core.hook.pv_containers_load(core=core, revision=model_of(self.rev, self.state), goals_timeout=None)

    @hookimpl
    def pv_steps_running_revision(self, core):
        return self.rev if self.state is not None else None

    @hookimpl
    def pv_steps_revision(self, core, rev):
        return model_of(self.rev, self.state) if rev in ("current", self.rev) and self.state is not None else None


class FakeProc:
    def __init__(self, name, pid):
        self.name = name
        self.pid = pid
        self.code = None

    def exit(self, code=1):
        self.code = code


class FakeRuntime:
    """Records starts and stops; tests end a 'process' with ``proc.exit()``."""

    def __init__(self):
        self.procs = {}
        self.started = []
        self.stopped = []
        self.fail = set()
        self.pid_of = {}

    def start(self, container):
        if container.name in self.fail:
            raise RuntimeError("cannot start " + container.name)
        proc = FakeProc(container.name, self.pid_of.get(container.name) or next(_PIDS))
        self.procs[container.name] = proc
        self.started.append(container.name)
        return proc

    def stop(self, handle, timeout):
        handle.code = -15
        self.stopped.append(handle.name)

    def pid(self, handle):
        return handle.pid

    def poll(self, handle):
        return handle.code


class RuntimePlugin:
    """Registers a runtime through ``pv_containers_runtime``, as an LXC plugin would."""

    def __init__(self, runtime):
        self.runtime = runtime

    @hookimpl(tryfirst=True)
    def pv_containers_runtime(self, core):
        return self.runtime


class Clock:
    """A monotonic clock tests move by hand."""

    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class Recorder:
    """Collects the engine's status hooks."""

    def __init__(self):
        self.changes = []
        #: every container.status event, as published
        self.events = []
        self.revision = []
        self.starting = []
        self.refuse = set()

    @hookimpl
    def pvcore_event(self, core, event):
        if event.type == "container.status":
            self.events.append(event)
            self.changes.append((event.subject, event.data["old"], event.data["new"]))
        elif event.type == "revision.status":
            self.revision.append((event.subject, event.data["status"]))

    @hookimpl
    def pv_containers_starting(self, core, name, run):
        self.starting.append(name)
        if name in self.refuse:
            raise RuntimeError("driver missing")
