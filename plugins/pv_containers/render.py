"""The JSON shapes of ``GET /containers`` and ``GET /groups`` (docs/protocol.md §7.1, §7.3)."""
from __future__ import annotations

from typing import Iterable, List

from .model import Container, Group, Status, number, render_backoff


def _flag(value: bool) -> str:
    # NOTE: upstream's container listing uses strings for booleans.
    return "true" if value else "false"


def container_entry(container: Container) -> dict:
    """One ``GET /containers`` object, keys in the contract's order."""
    entry = {
        "name": container.name,
        "group": container.group.name if container.group else None,
        "status": container.status.name,
        "status_goal": container.status_goal,
        "restart_policy": container.restart_policy,
        "roles": list(container.roles),
    }
    recovery = container.recovery
    if recovery is not None and recovery.policy != "no":
        entry["auto_recovery"] = {
            "policy": recovery.policy,
            "max_retries": number(recovery.max_retries),
            "current_retries": number(container.retries),
            "stable_timeout": number(recovery.stable_timeout),
            "is_stable": _flag(container.is_stable),
            "backoff_policy": render_backoff(recovery.backoff_policy),
        }
    if container.restart_policy == "container":
        entry["user_stopped"] = _flag(container.user_stopped)
    return entry


def group_status(members: Iterable[Container]) -> Status:
    """READY unless a member below READY misses its goal: then the lowest such status.

    A ``system`` container that died for good (no recovery, or none left)
    makes its group STOPPED: the device must not say READY with part of its
    platform dead (docs/protocol.md §D5.3).
    """
    members = list(members)
    if any(c.died and c.restart_policy == "system" for c in members):
        return Status.STOPPED
    missing = [c.status for c in members if c.status < Status.READY and c.status != c.goal]
    return min(missing) if missing else Status.READY


def group_entry(group: Group, members: List[Container]) -> dict:
    """One ``GET /groups`` object, keys in the contract's order."""
    entry = {
        "name": group.name,
        "status_goal": group.status_goal,
        "restart_policy": group.restart_policy,
        "status": group_status(members).name,
    }
    recovery = group.recovery
    if recovery is not None and recovery.policy != "no":
        entry["auto_recovery"] = {
            "max_retries": number(recovery.max_retries),
            "stable_timeout": number(recovery.stable_timeout),
            "backoff_policy": render_backoff(recovery.backoff_policy),
        }
    return entry
