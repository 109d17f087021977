"""What the API and the other plugins ask of the engine.

:class:`Lifecycle` is mixed into :class:`pv_containers.engine.Engine`: the
lifecycle actions of ``PUT /containers/{name}`` (docs/protocol.md §7.2), the ready
signal, caller identification, roles, pids and the two listings. Each method
changes records under the data lock and fires hooks after releasing it; the
processes themselves are started and stopped by the engine's next step.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from pvcore.body import dumps
from pvcore.errors import BadRequest, NotFound
from pvcore.supervisor import proc_stat

from . import render
from .model import Container, Status

START_REFUSED = "Container must be in STOPPED, STOPPING, or RECOVERING state to start"
RESTART_REFUSED = "Container state does not allow restart"
_ACTIVE = (Status.STARTING, Status.STARTED, Status.READY)
_IDLE = (Status.STOPPED, Status.RECOVERING)
#: how far up a caller's ancestry we look for a container's init.
_MAX_DEPTH = 64


class Lifecycle:
    """API-facing operations of the engine (see the module docstring)."""

    def container(self, name: str):
        """The container ``name`` of the running revision, or ``None``."""
        rev = self._revision
        return rev.containers.get(name) if rev is not None else None

    def control(self, name: str, action: str) -> None:
        """``start``/``stop``/``restart`` per docs/protocol.md §7.2; raises :class:`BadRequest`."""
        events = []
        with self._lock:
            c = self.container(name)
            if c is None:  # the revision changed under the request
                raise NotFound("Container not found")
            status = c.status
            if action == "stop":
                if status == Status.STOPPED:
                    c.user_stopped = True
                elif status == Status.RECOVERING:
                    # NOTE: auto-recovery skips a user-stopped container, so it is stopped now.
                    c.user_stopped, c.recover_at = True, None
                    self._set(c, Status.STOPPED, events)
                elif status == Status.STOPPING or c.stop_requested:
                    c.after_stop = "user_stop"
                elif c.handle is not None or status in _ACTIVE:
                    c.stop_requested, c.after_stop = True, "user_stop"
                else:
                    # Never started (INSTALLED, MOUNTED, BLOCKED): keep it from starting.
                    c.user_stopped = True
                    self._set(c, Status.STOPPED, events)
            elif action == "start":
                if status in _IDLE:
                    self._reset(c)
                    self._set(c, Status.INSTALLED, events)
                elif status == Status.STOPPING or c.stop_requested:
                    c.after_stop = "restart"
                elif status not in _ACTIVE:
                    raise BadRequest(START_REFUSED)
            elif action == "restart":
                if status in _IDLE:
                    self._reset(c)
                    self._set(c, Status.INSTALLED, events)
                elif status in _ACTIVE or status == Status.STOPPING:
                    c.stop_requested = c.stop_requested or status != Status.STOPPING
                    c.after_stop = "restart"
                else:
                    raise BadRequest(RESTART_REFUSED)
        self._fire(events)
        self.wake()

    def signal(self, name: str, kind: str) -> bool:
        """The ``ready`` signal from container ``name``: True if expected (status → READY)."""
        events = []
        with self._lock:
            c = self.container(name)
            if c is None or kind != "ready" or c.goal != Status.READY:
                return False
            if c.status in (Status.STARTING, Status.STARTED):
                self._set(c, Status.READY, events)
                c.goal_reached_at = self._clock()
        self._fire(events)
        self.wake()
        return True

    def identify(self, pid: int) -> Optional[str]:
        """The container whose process tree holds ``pid`` (ancestry or process group)."""
        with self._lock:
            rev = self._revision
            leaders = {c.pid: c.name for c in rev.containers.values() if c.handle is not None and c.pid > 0} \
                if rev else {}
        if not leaders:
            return None
        current = pid
        for _ in range(_MAX_DEPTH):
            if current <= 1:
                return None
            if current in leaders:
                return leaders[current]
            stat = proc_stat(current)
            if stat is None:
                return None
            if int(stat[2]) in leaders:
                return leaders[int(stat[2])]
            current = int(stat[1])
        return None

    def cgroups(self) -> Dict[str, List[str]]:
        """``{name: cgroups}`` of the running containers, as their runtime reports them."""
        with self._lock:
            rev = self._revision
            handles = [(c.name, c.handle) for c in rev.containers.values() if c.handle is not None] if rev else []
        report = getattr(self.runtime, "cgroups", None)
        if report is None:
            return {}
        return {name: list(report(handle)) for name, handle in handles}

    def roles(self, name: str) -> Optional[List[str]]:
        with self._lock:
            c = self.container(name)
            return list(c.roles) if c is not None else None

    def pids(self) -> Optional[Dict[str, int]]:
        with self._lock:
            rev = self._revision
            if rev is None:
                return None
            return {c.name: (c.pid if c.handle is not None else -1) for c in rev.containers.values()}

    def container_list(self) -> Optional[list]:
        """``GET /containers`` in state order, or ``None`` before a state is loaded."""
        with self._lock:
            rev = self._revision
            return [render.container_entry(c) for c in rev.containers.values()] if rev else None

    def container_list_json(self) -> Optional[bytes]:
        """:meth:`container_list` as the response body, or ``None`` before a state is loaded.

        PERF: containers poll this listing, and rendering it was most of what
        a request cost; the bytes are kept while no container's shown field
        was set (:attr:`Container.shown_version`), so a poll renders nothing
        and compares one number.
        """
        with self._lock:
            rev = self._revision
            if rev is None:
                return None
            version = Container.shown_version  # read before rendering: a change meanwhile re-renders
            memo = getattr(self, "_list_memo", None)
            if memo is not None and memo[0] is rev and memo[1] == version:
                return memo[2]
            body = dumps([render.container_entry(c) for c in rev.containers.values()])
            self._list_memo = (rev, version, body)
            return body

    def group_list(self) -> Optional[list]:
        """``GET /groups`` in start order, or ``None`` before a state is loaded."""
        with self._lock:
            rev = self._revision
            if rev is None:
                return None
            return [render.group_entry(g, [c for c in rev.containers.values() if c.group is g])
                    for g in rev.groups]

    def statuses(self) -> Dict[str, Tuple[str, int]]:
        """``{name: (status, pid)}``, for logs and tests."""
        with self._lock:
            rev = self._revision
            return {c.name: (c.status.name, c.pid) for c in rev.containers.values()} if rev else {}
