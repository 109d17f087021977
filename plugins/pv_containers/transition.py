"""Switching the engine to another revision (``pv_containers_run_revision``).

:class:`Transitions` is mixed into :class:`pv_containers.engine.Engine`.
"""
from __future__ import annotations

from typing import Optional, Tuple

import structlog

from .model import Container, Revision, Status, goal_late, load

log = structlog.get_logger(__name__)

NOT_REACHED = "Status goal not reached"
NOT_STARTED = "A container could not be started"


class Verdict(tuple):
    """``(ok, message)``, upstream's progress message, with :attr:`detail`:
    which container, and why (its start error, its exit status), for the
    progress ``logs`` (docs/protocol.md §D3.2). Equal to the plain pair."""

    detail: str

    def __new__(cls, ok: bool, message: str, detail: str = "") -> "Verdict":
        self = super().__new__(cls, (ok, message))
        self.detail = detail
        return self


class Transitions:
    """Stop the running containers, load another revision, wait for its goals."""

    def run_revision(self, model, only_changed: bool = False,
                     timeout: Optional[float] = None) -> Tuple[bool, str]:
        """Replace the running containers with those of revision ``model`` (``pv_steps_revision``); wait for the goals.

        1. Stop the running containers in reverse group order (each within
           ``stop_timeout``): all of them, or with ``only_changed`` only those
           whose ``digest`` differs in ``model`` or that ``model`` drops;
           unchanged ones keep running, with their pid and counters.
        2. Make ``model`` the engine's revision (it does not touch
           ``trails/current``: that is the caller's job) and start it in
           group order through the normal status machine.
        3. Block the calling thread until every container reached its goal
           → ``(True, "")``; a failed start, a container that ended STOPPED
           (crash without recovery) or that used up its ``max_retries``
           (whatever its ``backoff_policy``) → ``(False, "A container could
           not be started")``; a container whose status-goal timer ran out
           (armed at each start from its group's ``timeout``; ``timeout``
           here is the one of groups that set none, ``PV_UPDATER_GOALS_TIMEOUT``)
           → ``(False, "Status goal not reached")``.
           On failure the revision stays loaded: roll back by running the
           previous one.
        """
        new = load(model, timeout)
        rev = new.rev
        events: list = []
        with self._ops:
            with self._lock:
                if self._closed:
                    return Verdict(False, NOT_STARTED, "the container engine is stopping")
                old = self._revision
                olds = self._ordered(reverse=True)
            kept = set()
            if old is not None and only_changed:
                kept = {c.name for c in olds if c.name in new.containers
                        and new.containers[c.name].digest == c.digest}
            self._stop_many([c for c in olds if c.name not in kept], None)
            with self._lock:
                for name, c in new.containers.items():
                    if name in kept:
                        _carry_over(old.containers[name], c)
                    else:
                        self._set(c, Status.INSTALLED, events)
                self._revision = new
            log.info("revision_run", rev=rev, only_changed=only_changed, kept=sorted(kept))
        self._fire(events)
        self.wake()
        return self._wait_goals(new)

    def _wait_goals(self, target: Revision) -> Tuple[bool, str]:
        while True:
            self.step()
            now = self._clock()
            with self._lock:
                verdict = self._verdict(target, now)
            if verdict is not None:
                log.info("revision_goals", rev=target.rev, ok=verdict[0], message=verdict[1], detail=verdict.detail)
                return verdict
            self._sleep(0.1)

    def _verdict(self, target: Revision, now: float) -> Optional[Tuple[bool, str]]:
        if self._revision is not target:
            return Verdict(False, NOT_REACHED, "another revision was loaded meanwhile")
        members = list(target.containers.values())
        failed = [c for c in members if c.failed_start or c.recovery_failed or c.recovery_exhausted
                  or (c.status == Status.STOPPED and not c.user_stopped)]
        if failed:
            return Verdict(False, NOT_STARTED,
                           "; ".join(f"container {c.name}: {c.problem or c.status.name}" for c in failed))
        if all(c.status == c.goal or (c.goal == Status.STARTED and c.status == Status.READY) for c in members):
            return Verdict(True, "")
        late = [c for c in members if goal_late(c, now)]
        if late:
            log.warning("status_goal_timed_out", rev=target.rev, containers=[c.name for c in late])
            return Verdict(False, NOT_REACHED, "; ".join(
                f"container {c.name} (group {c.group.name if c.group else '-'}) is {c.status.name}, "
                f"its goal {c.goal.name}" for c in late))
        return None


def _carry_over(old: Container, new: Container) -> None:
    """Keep an unchanged container's runtime record across a revision switch."""
    for name in ("status", "handle", "pid", "retries", "last_start", "goal_reached_at", "is_stable",
                 "recovery_failed", "user_stopped", "recover_at", "backoff_reset", "stop_requested",
                 "after_stop", "failed_start", "died", "goal_deadline", "recovery_exhausted", "problem"):
        setattr(new, name, getattr(old, name))
    if new.recovery is None:
        new.recovery = old.recovery
