"""The container engine: the status machine of the running revision.

One :class:`Engine` per core. Its :meth:`Engine.step` does one round of work —
reap exited processes (and recover them), carry out requested stops, fire due
recovery timers, start what group gating allows — and is called by the
engine service's loop (and by :meth:`run_revision` while it waits). Steps are
serialised by ``_ops``; the data lock ``_lock`` is only held for short
in-memory updates, never while a hook or the runtime runs.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import structlog

from . import render
from .lifecycle import Lifecycle
from .model import Container, Revision, Status, achieved, goal_late, load, stability_pending
from .transition import Transitions

log = structlog.get_logger(__name__)

Events = List[Tuple[str, str, str]]

class Engine(Lifecycle, Transitions):
    """Containers and groups of the running revision, and their processes.

    :param core: the core (hooks, settings, supervisor).
    :param clock: monotonic seconds; injected by tests.
    :param sleep: how :meth:`run_revision` waits between steps; injected by tests.
    """

    def __init__(self, core, clock: Callable[[], float] = time.monotonic,
                 sleep: Optional[Callable[[float], None]] = None):
        self._core = core
        self._clock = clock
        self._changed = threading.Event()
        self._sleep = sleep or self._wait_change
        self._lock = threading.Lock()
        self._ops = threading.RLock()
        self._revision: Optional[Revision] = None
        self._boot_events: Events = []
        self._runtime = None
        self._rev_status: Optional[str] = None
        self._group_status: Dict[str, str] = {}  # as last published
        self._closed = False
        self.wake: Callable[[], None] = lambda: None

    # -- plumbing -------------------------------------------------------------

    @property
    def runtime(self):
        """The runtime ``pv_containers_runtime`` chose (asked once)."""
        if self._runtime is None:
            self._runtime = self._core.hook.pv_containers_runtime(core=self._core)
            if self._runtime is None:
                raise RuntimeError("no installed plugin provides container runtime "
                                   f"{self._core.settings.get('container_runtime')!r}")
            log.info("container_runtime", runtime=type(self._runtime).__name__)
        return self._runtime

    @property
    def loaded(self) -> bool:
        return self._revision is not None

    def _wait_change(self, seconds: float) -> None:
        self._changed.wait(seconds)
        self._changed.clear()

    def _set(self, c: Container, status: Status, events: Events, **extra) -> None:
        if c.status != status:
            events.append((c.name, c.status.name, status.name, extra))
            c.status = status

    def _ordered(self, reverse: bool = False) -> List[Container]:
        """Containers in group order (state order inside a group)."""
        rev = self._revision
        if rev is None:
            return []
        result = [c for g in rev.groups for c in rev.containers.values() if c.group is g]
        return result[::-1] if reverse else result

    def _fire(self, events: Events) -> None:
        """Tell the other plugins, outside the data lock."""
        core = self._core
        rev_name = self._revision.rev if self._revision is not None else None
        for name, old, new, extra in events:
            log.info("container_status_changed", container=name, old=old, new=new)
            try:
                core.publish("container.status", name, {"old": old, "new": new, "rev": rev_name, **extra})
            except Exception:
                log.exception("status_event_failed", container=name)
        with self._lock:
            rev = self._revision
            status = self._aggregate() if rev else None
            changed = status != self._rev_status
            self._rev_status = status
            groups = []
            for group in rev.groups if rev is not None else ():
                now = render.group_status([c for c in rev.containers.values() if c.group is group]).name
                before = self._group_status.get(group.name)
                if now != before:
                    self._group_status[group.name] = now
                    groups.append((group.name, before, now))
        for name, old, new in groups:
            try:
                core.publish("group.status", name, {"old": old, "new": new})
            except Exception:
                log.exception("status_event_failed", group=name)
        if changed and rev is not None:
            log.info("revision_status_changed", rev=rev.rev, status=status)
            try:
                core.publish("revision.status", rev.rev, {"status": status})
            except Exception:
                log.exception("status_event_failed", rev=rev.rev)
        if events:
            self._changed.set()

    def publish_idle(self) -> None:
        """Say ``revision.status`` ``NONE`` (upstream's status of a state not
        evaluated yet): no revision runs. A revision run later publishes its own."""
        with self._lock:
            if self._revision is not None or self._rev_status == "NONE":
                return
            self._rev_status = "NONE"
        log.info("revision_status_changed", rev=None, status="NONE")
        self._core.publish("revision.status", "", {"status": "NONE"})

    def _aggregate(self) -> str:
        rev = self._revision
        statuses = [render.group_status([c for c in rev.containers.values() if c.group is g]) for g in rev.groups]
        if Status.STOPPED in statuses:  # a dead platform, see render.group_status
            return Status.STOPPED.name
        return min(statuses, default=Status.READY).name

    # -- loading --------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether a revision was handed over (:meth:`load` or :meth:`run_revision`)."""
        with self._lock:
            return self._revision is not None

    def load(self, model, goals_timeout: Optional[float] = None) -> bool:
        """Take the revision running at boot (its ``pv_steps_revision`` model); it comes up once the service runs.

        Handed over by the owner of revisions (``pv_containers_load``);
        ignored when a revision is already loaded. ``goals_timeout``: the
        status-goal timeout of groups the state gives none.
        """
        revision = load(model, goals_timeout)
        rev = revision.rev
        events: Events = []
        with self._lock:
            if self._revision is not None:
                return True
            for c in revision.containers.values():
                self._set(c, Status.INSTALLED, events)
            self._revision = revision
            # NOTE: published by the first step, once services run: the app
            # may still be being built, its listeners not ready yet.
            self._boot_events = events
        log.info("revision_loaded", rev=rev, containers=list(revision.containers))
        return True

    # -- the state machine ----------------------------------------------------

    def step(self) -> None:
        """One round of work; safe to call from any thread."""
        with self._ops:
            if self._revision is None:
                return
            events, self._boot_events = self._boot_events, []
            if events:
                self._fire(events)
            self._reap()
            self._do_stops()
            self._timers()
            self._do_starts()

    def _reap(self) -> None:
        with self._lock:
            running = [c for c in self._ordered() if c.handle is not None]
        for c in running:
            code = self.runtime.poll(c.handle)
            if code is None:
                continue
            events: Events = []
            with self._lock:
                c.handle, c.pid = None, -1
                if c.stop_requested:
                    c.stop_requested = False
                    self._finish_stop(c, events)
                else:
                    self._crashed(c, code, events)
            self._fire(events)

    def _crashed(self, c: Container, code: Optional[int], events: Events) -> None:
        now = self._clock()
        c.is_stable, c.goal_reached_at = False, None
        if not c.failed_start:
            c.problem = "exited" if code is None else f"exited with status {code}"
        rec = c.recovery
        if c.user_stopped or rec is None or not rec.recovers:
            log.warning("container_exited", container=c.name, exit_code=code, recovery="no")
            self._died(c, code, events)
            return
        if rec.reset_window and c.last_start is not None and now - c.last_start > rec.reset_window:
            c.retries = 0
        if rec.max_retries == 0 or c.retries < rec.max_retries:
            c.retries += 1
            delay = rec.delay(c.retries)
            c.recover_at = now + delay
            log.warning("container_recovering", container=c.name, exit_code=code, retry=c.retries, delay_s=delay)
            self._set(c, Status.RECOVERING, events)
        elif rec.backoff_policy in ("reboot", "never"):
            c.recovery_failed = c.recovery_exhausted = True
            c.problem = f"{c.problem}, {c.retries} retries used"
            # NOTE: a real device reboots for "reboot"; this one never reboots its host.
            log.error("container_recovery_exhausted", container=c.name, retries=c.retries,
                      backoff_policy=rec.backoff_policy)
            self._died(c, code, events, recovery_exhausted=True)
        else:
            # The event says recovery_exhausted: an update being tested rolls
            # back at once, whatever the backoff policy (docs/protocol.md §D3.2).
            c.recover_at, c.backoff_reset, c.recovery_exhausted = now + rec.backoff_policy, True, True
            c.problem = f"{c.problem}, {c.retries} retries used"
            log.warning("container_recovery_backoff", container=c.name, wait_s=rec.backoff_policy)
            self._set(c, Status.RECOVERING, events, recovery_exhausted=True, problem=c.problem)

    def _died(self, c: Container, code: Optional[int], events: Events, **extra) -> None:
        c.died = not c.user_stopped
        if c.died and c.restart_policy == "system":
            # The group and the revision status say STOPPED, never READY; the
            # event's platform_failed lets the owner of power reboot a real
            # device, as upstream does (docs/protocol.md §D5.3).
            log.error("platform_container_failed", container=c.name, exit_code=code,
                      group=c.group.name if c.group else None)
            self._set(c, Status.STOPPED, events, platform_failed=True, problem=c.problem, **extra)
            return
        if c.died:
            extra["problem"] = c.problem
        self._set(c, Status.STOPPED, events, **extra)

    def _do_stops(self) -> None:
        with self._lock:
            targets = [c for c in self._ordered(reverse=True) if c.stop_requested]
        for c in targets:
            self._stop_one(c, self._core.settings.stop_timeout)

    def _stop_one(self, c: Container, timeout: float) -> None:
        events: Events = []
        with self._lock:
            handle = c.handle
            if handle is not None:
                self._set(c, Status.STOPPING, events)
        self._fire(events)
        if handle is not None:
            try:
                self.runtime.stop(handle, timeout)
            except Exception:
                log.exception("container_stop_failed", container=c.name)
            log.info("container_stopped", container=c.name, child_pid=c.pid)
        events = []
        with self._lock:
            c.handle, c.pid, c.stop_requested = None, -1, False
            self._finish_stop(c, events)
        self._fire(events)

    def _finish_stop(self, c: Container, events: Events) -> None:
        c.is_stable, c.goal_reached_at, c.recover_at = False, None, None
        action, c.after_stop = c.after_stop, None
        if action == "restart":
            self._reset(c)
            self._set(c, Status.INSTALLED, events)
        else:
            c.user_stopped = c.user_stopped or action == "user_stop"
            self._set(c, Status.STOPPED, events)

    @staticmethod
    def _reset(c: Container) -> None:
        c.retries, c.recovery_failed, c.user_stopped = 0, False, False
        c.backoff_reset, c.recover_at, c.failed_start, c.died = False, None, False, False
        c.goal_deadline, c.recovery_exhausted = None, False

    def _timers(self) -> None:
        now = self._clock()
        events: Events = []
        with self._lock:
            for c in self._ordered():
                if c.status == Status.RECOVERING and c.recover_at is not None and now >= c.recover_at:
                    c.recover_at = None
                    if c.user_stopped:
                        self._set(c, Status.STOPPED, events)
                        continue
                    if c.backoff_reset:
                        c.retries, c.backoff_reset = 0, False
                    self._set(c, Status.INSTALLED, events)
                if c.status == c.goal:
                    c.goal_deadline, c.recovery_exhausted = None, False
                    if c.goal_reached_at is None:
                        c.goal_reached_at = now
                if not c.is_stable and c.status == c.goal and c.goal_reached_at is not None:
                    stable_after = c.recovery.stable_timeout if c.recovery else 0.0
                    c.is_stable = now - c.goal_reached_at >= stable_after
        self._fire(events)

    def _group_done(self, group, members: List[Container], now: float) -> bool:
        """Whether the next group may start: every member reached its goal, or one's timer ran out."""
        if all(achieved(c) is not False for c in members) or group.timed_out:
            return True
        late = [c.name for c in members if goal_late(c, now)]
        if late:
            group.timed_out = True
            log.warning("group_timed_out", group=group.name, timeout_s=group.timeout, late=late,
                        waiting=[c.name for c in members if achieved(c) is False])
            return True
        return False

    def _do_starts(self) -> None:
        now = self._clock()
        events: Events = []
        to_start: List[Container] = []
        with self._lock:
            rev = self._revision
            if rev is None or self._closed:
                return
            gate_open = True
            for group in rev.groups:
                members = [c for c in rev.containers.values() if c.group is group]
                if not gate_open:
                    for c in members:
                        if c.status == Status.INSTALLED:
                            self._set(c, Status.BLOCKED, events)
                    continue
                for c in members:
                    if c.status not in (Status.INSTALLED, Status.BLOCKED) or c.stop_requested:
                        continue
                    if c.recovery is None and group.recovery is not None:
                        c.recovery = group.recovery  # copied in at first start (docs/protocol.md §D4.4)
                    if c.goal == Status.MOUNTED:
                        self._set(c, Status.MOUNTED, events)
                        c.goal_reached_at = now
                    else:
                        self._set(c, Status.STARTING, events)
                        to_start.append(c)
                gate_open = self._group_done(group, members, now)
        self._fire(events)
        for c in to_start:
            self._start_one(c)

    def _start_one(self, c: Container) -> None:
        core = self._core
        events: Events = []
        try:
            core.hook.pv_containers_starting(core=core, name=c.name, run=c.run, container=c.spec)
            handle = self.runtime.start(c)
            pid = self.runtime.pid(handle)
        except Exception as exc:
            log.exception("container_start_failed", container=c.name)
            with self._lock:
                c.failed_start = True
                c.problem = f"could not start: {exc}"[:512]
                self._crashed(c, None, events)
            self._fire(events)
            return
        with self._lock:
            c.handle, c.pid, c.last_start, c.failed_start, c.died = handle, pid, self._clock(), False, False
            # NOTE: a fast container (LXC's init signals at once) may be READY before start() returned.
            # Its status-goal timer, from its group's timeout, armed at every start.
            c.goal_deadline = c.last_start + c.group.timeout
            if c.status == Status.STARTING:
                self._set(c, Status.STARTED, events)
            if c.goal == Status.STARTED:
                c.goal_reached_at = c.last_start
        log.info("container_started", container=c.name, child_pid=pid)
        self._fire(events)

    # -- whole-revision operations --------------------------------------------

    def stop_all(self, timeout: Optional[float] = None) -> bool:
        """Stop every container, reverse group order, each within ``timeout``."""
        with self._ops:
            with self._lock:
                targets = self._ordered(reverse=True)
            self._stop_many(targets, timeout)
        return True

    def _stop_many(self, targets: List[Container], timeout: Optional[float]) -> None:
        limit = self._core.settings.stop_timeout if timeout is None else timeout
        for c in targets:
            with self._lock:
                c.stop_requested, c.after_stop = True, None
            self._stop_one(c, limit)

    def stability_pending(self) -> List[str]:
        """Containers of the running revision that have not yet survived their ``stable_timeout``."""
        with self._lock:
            return [c.name for c in self._ordered() if stability_pending(c)]

    def open(self) -> None:
        """Allow starts again (the service started)."""
        with self._lock:
            self._closed = False

    def close(self) -> None:
        """Shutdown: no more starts, every container stopped."""
        with self._lock:
            self._closed = True
        self.stop_all()
