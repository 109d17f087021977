"""Is a state JSON acceptable as a revision? (docs/protocol.md §D2.4, parse-time rules)

:func:`check_state` returns ``None`` when the document is valid, else a short
reason for the log; clients only ever see the contract's one 422 text.
Run-time failures (missing objects, unknown services, driver errors) are the
engine's business, not this module's.
"""
from __future__ import annotations

import numbers
from typing import Any, Dict, List, Optional, Tuple

from pv_steps.scan import ScannedState, loads_strict, scan_state

SYSTEM1 = "pantavisor-service-system@1"
MULTI1 = "pantavisor-multi-platform@1"
STATUS_GOALS = ("MOUNTED", "STARTED", "READY")
RESTART_POLICIES = ("system", "container")
#: Built-in groups used when the state declares none (docs/protocol.md §D5.1).
DEFAULT_GROUPS = ("data", "root", "platform", "app")


def parse_state(data: bytes) -> Optional[Dict[str, Any]]:
    """The document as a dict, or ``None`` if it is not a strict JSON object (in memory: small documents only)."""
    try:
        doc = loads_strict(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def scan_state_file(path: str) -> Optional[ScannedState]:
    """The state JSON in file ``path`` as :func:`check_state` needs it, in bounded memory.

    ``None`` if it is not a strict JSON object (:mod:`pv_steps.scan`).
    """
    return scan_state(path, needs_value)


def needs_value(key: str) -> bool:
    """Does :func:`check_state` read the value of top-level ``key``? A large state keeps only those."""
    return key in _READ or key.endswith("/run.json") or not _safe_key(key)


_READ = frozenset(("#spec", "device.json", "groups.json", "bsp/run.json", "bsp/drivers.json"))


def _safe_key(key: str) -> bool:
    # Keys become file paths inside the trail when the revision is run.
    if not key or key.startswith("/") or "\\" in key or "\0" in key:
        return False
    return all(part not in ("", ".", "..") for part in key.split("/"))


def _check_groups(groups: Any) -> Optional[str]:
    if not isinstance(groups, list) or not groups:
        return "groups must be a non-empty array"
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("name"), str) or not group["name"]:
            return "group without name"
        if "status_goal" in group and group["status_goal"] not in STATUS_GOALS:
            return "group with bad status_goal"
        if "restart_policy" in group and group["restart_policy"] not in RESTART_POLICIES:
            return "group with bad restart_policy"
        timeout = group.get("timeout", 0)
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or timeout < 0:
            return "group with bad timeout"
    return None


def _group_names(state: Dict[str, Any]) -> Tuple[Optional[str], List[str]]:
    if "device.json" in state:
        device = state["device.json"]
        if not isinstance(device, dict):
            return "device.json is not an object", []
        groups = device.get("groups")
    else:
        groups = state.get("groups.json")
    if groups is None:
        return None, list(DEFAULT_GROUPS)
    error = _check_groups(groups)
    return error, [] if error else [g["name"] for g in groups]


def _check_run(key: str, run: Any, groups: List[str]) -> Optional[str]:
    if not isinstance(run, dict):
        return f"{key} is not an object"
    if not isinstance(run.get("name"), str) or not run["name"]:
        return f"{key} has no name"
    if run["name"] != key[: -len("/run.json")]:
        # One name per container (docs/protocol.md §D2.4): the folder is how
        # the revision's objects and the engine name it, so run.json's
        # "name" must agree, or a rollback would look for the wrong one.
        return f"{key} names another container"
    if "status_goal" in run and run["status_goal"] not in STATUS_GOALS:
        return f"{key} has a bad status_goal"
    if "restart_policy" in run and run["restart_policy"] not in RESTART_POLICIES:
        return f"{key} has a bad restart_policy"
    group = run.get("group", run.get("runlevel"))
    if group is not None and group not in groups:
        return f"{key} names an unknown group"
    return None


def _check_bsp(run: Any, init_mode: str) -> Optional[str]:
    if not isinstance(run, dict):
        return "bsp/run.json is not an object"
    if init_mode != "appengine":
        has_kernel = run.get("linux") and run.get("initrd")
        if not (has_kernel or run.get("fit") or run.get("rpiab")):
            return "bsp/run.json has no kernel+initrd, fit or rpiab"
    return None


def check_state(state: Dict[str, Any], init_mode: str = "appengine") -> Optional[str]:
    """``None`` if ``state`` is a valid revision for a device in ``init_mode``, else why not.

    Reads the values of the keys :func:`needs_value` names, and no other
    (a large state comes with only those, see :func:`scan_state_file`).
    """
    spec = state.get("#spec")
    if spec not in (SYSTEM1, MULTI1):
        return "unknown #spec"
    if spec == MULTI1 and init_mode == "appengine":
        return "multi-platform spec not allowed in appengine"
    for key in state:
        if key != "#spec" and not _safe_key(key):
            return "unsafe key"
    error, groups = _group_names(state)
    if error:
        return error
    for key, value in state.items():
        error = None
        if key.startswith("_sigs/"):
            continue
        if key == "bsp/run.json":
            error = _check_bsp(value, init_mode)
        elif key == "bsp/drivers.json":
            error = None if isinstance(value, dict) else "bsp/drivers.json is not an object"
        elif key.endswith("/run.json"):
            error = _check_run(key, value, groups)
        if error:
            return error
    return None
