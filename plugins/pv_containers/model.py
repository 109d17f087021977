"""The running revision as data: statuses, recovery settings, groups, containers.

Everything here is pure: :func:`parse_state` turns a state JSON (docs/protocol.md
§D2) into :class:`Group` and :class:`Container` records; the engine moves them
through :class:`Status`.
"""
from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import structlog

log = structlog.get_logger(__name__)


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


GOALS = ("MOUNTED", "STARTED", "READY")
POLICIES = ("system", "container")
RECOVERING_POLICIES = ("always", "on-failure")
#: PV_UPDATER_GOALS_TIMEOUT: the timeout of a group the state defines without one.
DEFAULT_GROUP_TIMEOUT = 120.0


@dataclass(frozen=True)
class Recovery:
    """An ``auto_recovery`` block (docs/protocol.md §D4.4).

    ``backoff_policy`` is ``"reboot"``, ``"never"`` or a duration in seconds.
    """

    policy: str = "no"
    max_retries: int = 0
    retry_delay: float = 0.0
    backoff_factor: float = 1.0
    reset_window: float = 0.0
    stable_timeout: float = 0.0
    backoff_policy: Any = "reboot"

    @property
    def recovers(self) -> bool:
        """Only ``always`` and ``on-failure`` restart a crashed container."""
        return self.policy in RECOVERING_POLICIES

    def delay(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (1-based)."""
        return self.retry_delay * self.backoff_factor ** max(attempt - 1, 0)


DEFAULT_APP_RECOVERY = Recovery("on-failure", 5, 5.0, 2.0, 0.0, 30.0, "reboot")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$")
_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_backoff(value: Any) -> Any:
    """``reboot``/``never`` or a duration (``30s``, ``10min``, ``1h``, a number) → seconds."""
    if isinstance(value, str) and value in ("reboot", "never"):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match:
        return float(match.group(1)) * _UNITS[match.group(2)]
    log.warning("backoff_policy_invalid", value=value)
    return "reboot"


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


def _num(block: Mapping[str, Any], key: str, default: float) -> float:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return default
    return float(value)


def parse_recovery(block: Any) -> Optional[Recovery]:
    """A run.json/group ``auto_recovery`` object, or ``None`` when absent."""
    if not isinstance(block, Mapping):
        return None
    policy = block.get("policy", block.get("type", "no"))
    if policy not in ("no", "always", "on-failure", "unless-stopped"):
        policy = "no"
    return Recovery(
        policy=policy,
        max_retries=int(_num(block, "max_retries", 0)),
        retry_delay=_num(block, "retry_delay", 0.0),
        backoff_factor=_num(block, "backoff_factor", 1.0),
        reset_window=_num(block, "reset_window", 0.0),
        stable_timeout=_num(block, "stable_timeout", 0.0),
        backoff_policy=parse_backoff(block.get("backoff_policy", "reboot")),
    )


@dataclass
class Group:
    """A group of the running revision (docs/protocol.md §D5)."""

    name: str
    status_goal: str = "STARTED"
    restart_policy: str = "container"
    timeout: float = DEFAULT_GROUP_TIMEOUT
    recovery: Optional[Recovery] = None
    #: when the group was first allowed to start (engine clock), for its timeout.
    opened_at: Optional[float] = None
    timed_out: bool = False


def default_groups() -> List[Group]:
    """``defaults/groups.json`` (docs/protocol.md §D5.1)."""
    return [
        Group("data", "MOUNTED", "system", 30.0),
        Group("root", "STARTED", "system", 30.0),
        Group("platform", "STARTED", "system", 30.0),
        Group("app", "STARTED", "container", 30.0, DEFAULT_APP_RECOVERY),
    ]


@dataclass
class Container:
    """One container of the running revision and its runtime record.

    The first block is what the state says; the rest is the engine's.
    A runtime's ``start(container)`` may read ``name``, ``rev``, ``run``,
    ``group.name`` and ``roles``.
    """

    name: str
    rev: str
    run: Dict[str, Any]
    group: Group
    status_goal: str
    restart_policy: str
    roles: Tuple[str, ...]
    #: run.json's own block; the group default is copied in at first start.
    recovery: Optional[Recovery]
    #: JSON of every state key the container owns, to detect changes.
    digest: str = ""

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


@dataclass
class Revision:
    """A parsed state: its groups in start order and containers in state order."""

    rev: str
    groups: List[Group] = field(default_factory=list)
    containers: Dict[str, Container] = field(default_factory=dict)


def _roles(run: Mapping[str, Any]) -> Tuple[str, ...]:
    # NOTE: a run.json without "roles" is mgmt (docs/protocol.md §D2.2).
    if "roles" not in run:
        return ("mgmt",)
    roles = run.get("roles")
    return ("mgmt",) if isinstance(roles, list) and "mgmt" in roles else ()


def _parse_groups(state: Mapping[str, Any]) -> Tuple[List[Group], bool]:
    device = state.get("device.json")
    entries = device.get("groups") if isinstance(device, Mapping) else None
    if entries is None and not isinstance(device, Mapping):
        entries = state.get("groups.json")
    if not isinstance(entries, list) or not entries:
        return default_groups(), True
    groups = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        goal = entry.get("status_goal", "STARTED")
        policy = entry.get("restart_policy", "container")
        groups.append(Group(
            name=entry["name"],
            status_goal=goal if goal in GOALS else "STARTED",
            restart_policy=policy if policy in POLICIES else "container",
            timeout=_num(entry, "timeout", DEFAULT_GROUP_TIMEOUT),
            recovery=parse_recovery(entry.get("auto_recovery")),
        ))
    return (groups, False) if groups else (default_groups(), True)


def owned_keys(state: Mapping[str, Any], name: str) -> Dict[str, Any]:
    """The state keys container ``name`` owns (docs/protocol.md §D2.1)."""
    return {
        key: value for key, value in state.items()
        if key.split("/", 1)[0] == name or key.startswith(f"_config/{name}/")
    }


def parse_state(rev: str, state: Mapping[str, Any]) -> Revision:
    """Groups and containers of a state JSON; lenient (validation is the storage's job)."""
    groups, defaults = _parse_groups(state)
    by_name = {group.name: group for group in groups}
    revision = Revision(rev, groups)
    explicit: List[Tuple[str, Dict[str, Any], Optional[str]]] = []
    for key, run in state.items():
        if not key.endswith("/run.json") or key.count("/") != 1 or key.startswith(("bsp/", "_")):
            continue
        if not isinstance(run, Mapping):
            continue
        name = run.get("name") if isinstance(run.get("name"), str) else key.split("/", 1)[0]
        wanted = run.get("group", run.get("runlevel"))
        if wanted is not None and wanted not in by_name:
            log.warning("container_group_unknown", container=name, group=wanted)
            wanted = None
        explicit.append((name, dict(run), wanted))
    root_taken = any(wanted == "root" for _, _, wanted in explicit)
    for name, run, wanted in explicit:
        if wanted is None:
            if defaults:
                wanted = "platform" if root_taken else "root"
                root_taken = True
            else:
                wanted = groups[-1].name
        group = by_name[wanted]
        goal = run.get("status_goal")
        policy = run.get("restart_policy")
        revision.containers[name] = Container(
            name=name,
            rev=rev,
            run=run,
            group=group,
            status_goal=goal if goal in GOALS else group.status_goal,
            restart_policy=policy if policy in POLICIES else group.restart_policy,
            roles=_roles(run),
            recovery=parse_recovery(run.get("auto_recovery")),
            digest=json.dumps(owned_keys(state, name), sort_keys=True),
        )
    return revision
