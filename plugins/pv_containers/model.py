"""The engine's records of the running revision: statuses, groups, containers.

What a revision says (groups, status goals, restart policies, roles,
auto-recovery) is the revision model's, interpreted once by pv_steps
(``pv_steps_revision``, docs/architecture.md §3); :func:`load` wraps that model
in :class:`Group` and :class:`Container` records holding the engine's runtime
state (status, pid, retries), which the engine moves through :class:`Status`.
"""
from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


class Status(enum.IntEnum):
    """Container status; the order matters (docs/protocol.md §D4.1)."""

    NONE = 0
    INSTALLED = 1
    MOUNTED = 2
    BLOCKED = 3
    STARTING = 4
    STARTED = 5
    READY = 6
    RECOVERING = 7
    STOPPING = 8
    STOPPED = 9


def render_backoff(value: Any) -> str:
    """Upstream's rendering: ``reboot``, ``never``, ``<n>h``, ``<n>min`` or ``<n>s``."""
    if isinstance(value, str):
        return value
    seconds = int(value)
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60}min"
    return f"{seconds}s"


def number(value: float) -> Any:
    """A JSON number as upstream prints it: integers without decimals."""
    return int(value) if float(value).is_integer() else value


def _from_spec(name: str) -> property:
    """A read-only attribute of the revision model's record (``spec``): the engine never changes it."""
    return property(lambda self: getattr(self.spec, name), doc=f"The revision model's ``{name}``.")


#: Upstream's PV_UPDATER_GOALS_TIMEOUT default: the status-goal timeout of a group that sets none.
DEFAULT_GOALS_TIMEOUT = 120.0


@dataclass(eq=False)
class Group:
    """A group of the running revision: the revision model's group and the engine's record of it."""

    spec: Any
    #: the status-goal timeout of a group whose state sets none (``PV_UPDATER_GOALS_TIMEOUT``).
    default_timeout: float = DEFAULT_GOALS_TIMEOUT
    #: a member's status-goal timer ran out: the next group may start (at boot).
    timed_out: bool = False

    name = _from_spec("name")
    status_goal = _from_spec("status_goal")
    restart_policy = _from_spec("restart_policy")
    recovery = _from_spec("recovery")

    @property
    def timeout(self) -> float:
        """Seconds each member has, from each start, to reach its status goal (docs/protocol.md §D5.2)."""
        timeout = self.spec.timeout
        return self.default_timeout if timeout is None else timeout


#: What ``GET /containers`` shows of a container besides its spec
#: (render.container_entry): setting one of these changes the listing.
SHOWN = frozenset(("status", "recovery", "retries", "is_stable", "user_stopped", "group"))
_SHOWN_CHANGES = itertools.count(1)


@dataclass(eq=False)
class Container:
    """One container of the running revision and the engine's runtime record of it.

    ``spec`` is the revision model's container (``pv_steps_revision``): what
    the state says, read-only. The rest is the engine's. A runtime's
    ``start(container)`` may read ``name``, ``rev``, ``run``, ``group.name``,
    ``roles`` and ``spec`` (its objects, config, folder).
    """

    spec: Any
    rev: str
    group: Group
    #: run.json's own block (the model's); the group default is copied in at first start.
    recovery: Any = None

    status: Status = Status.NONE
    handle: Any = None
    pid: int = -1
    retries: int = 0
    last_start: Optional[float] = None
    goal_reached_at: Optional[float] = None
    is_stable: bool = False
    recovery_failed: bool = False
    user_stopped: bool = False
    recover_at: Optional[float] = None
    backoff_reset: bool = False
    #: set by the API/engine: stop the process on the next step.
    stop_requested: bool = False
    #: what to do once stopped: ``"user_stop"`` or ``"restart"``.
    after_stop: Optional[str] = None
    failed_start: bool = False
    #: exited on its own and stayed STOPPED: no recovery, or none left.
    died: bool = False
    #: its status-goal timer (engine clock), armed at each start from its group's
    #: timeout and disarmed once the goal is reached (docs/protocol.md §D5.2).
    goal_deadline: Optional[float] = None
    #: it used up ``max_retries`` (whatever the ``backoff_policy``); cleared at its goal.
    recovery_exhausted: bool = False
    #: what last went wrong, for progress logs: the runtime's start error or the
    #: exit status (docs/protocol.md §D3.2, "Progress logs").
    problem: str = ""

    name = _from_spec("name")
    run = _from_spec("run")
    status_goal = _from_spec("status_goal")
    restart_policy = _from_spec("restart_policy")
    roles = _from_spec("roles")
    digest = _from_spec("digest")

    #: Bumped (on the class) whenever any container's shown attribute is set:
    #: the engine keeps the rendered listing while it stays the same.
    shown_version = 0

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in SHOWN:
            Container.shown_version = next(_SHOWN_CHANGES)

    @property
    def goal(self) -> Status:
        return Status[self.status_goal]

    @property
    def running(self) -> bool:
        return self.handle is not None


def achieved(c: Container) -> Optional[bool]:
    """Goal check (docs/protocol.md §D4.2): True reached, False not yet, None does not block."""
    if c.status == c.goal:
        return True
    if c.status < Status.STARTING:
        return False
    if c.status > c.goal:
        return None
    return False


def goal_late(c: Container, now: float) -> bool:
    """Its status-goal timer ran out before it reached its goal."""
    if c.goal_deadline is None or now <= c.goal_deadline:
        return False
    return achieved(c) is False or c.status == Status.RECOVERING


def stability_pending(c: Container) -> bool:
    """It has a ``stable_timeout`` and has not yet survived it (nor given up, nor been stopped by a user)."""
    recovery = c.recovery or c.group.recovery
    return (recovery is not None and recovery.stable_timeout > 0 and not c.is_stable
            and not c.recovery_failed and not c.user_stopped)


@dataclass(eq=False)
class Revision:
    """The running revision: its model, groups in start order and containers in state order."""

    rev: str
    model: Any = None
    groups: List[Group] = field(default_factory=list)
    containers: Dict[str, Container] = field(default_factory=dict)


def load(revision: Any, goals_timeout: Optional[float] = None) -> Revision:
    """The engine's records for a revision model (``pv_steps_revision``): nothing is re-read from JSON.

    :param goals_timeout: the status-goal timeout of groups the state gives none
        (``PV_UPDATER_GOALS_TIMEOUT``); upstream's 120 s when ``None``.
    """
    default = DEFAULT_GOALS_TIMEOUT if goals_timeout is None else float(goals_timeout)
    groups = {g.name: Group(g, default) for g in revision.groups}
    loaded = Revision(revision.rev, revision, list(groups.values()))
    for spec in revision.containers.values():
        loaded.containers[spec.name] = Container(spec=spec, rev=revision.rev, group=groups[spec.group],
                                                 recovery=spec.recovery)
    return loaded
