"""Device facts the pre-checks need: config flags, remote mode, claim state.

* A config flag is asked through ``pvcore_config_get``; when no plugin
  answers, the upstream default applies.
* Remote mode: ``True`` after GO_REMOTE (until pvcore restarts); otherwise
  the device is remote when ``PV_CONTROL_REMOTE`` is on and the running
  revision is not a ``locals/`` one (or ``PV_CONTROL_REMOTE_ALWAYS`` is on),
  as device-model §1.5 says.
* Claim state: there is no Hub here, so a device is claimed only when the
  ``claimed`` setting says so and no UNCLAIM has been carried out since (the
  marker ``<storage>/cache/pvcore-unclaimed`` records that, across restarts).
"""
from __future__ import annotations

import os
from typing import Any

from pvcore.fsutil import atomic_write

from pv_commands.state import CommandState

UNCLAIMED_MARKER = os.path.join("cache", "pvcore-unclaimed")


def as_flag(value: Any, default: bool) -> bool:
    """Interpret a config value (bool, number or ``"0"``/``"1"``/``"true"``…)."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    return default


def config_flag(core, key: str, default: bool) -> bool:
    return as_flag(core.hook.pvcore_config_get(core=core, key=key), default)


def is_remote(core, cstate: CommandState) -> bool:
    if cstate.remote is not None:
        return cstate.remote
    if not config_flag(core, "PV_CONTROL_REMOTE", True):
        return False
    running = core.running_revision() or ""
    return not running.startswith("locals/") or config_flag(core, "PV_CONTROL_REMOTE_ALWAYS", False)


def _marker(core) -> str:
    return os.path.join(core.settings.storage_dir, UNCLAIMED_MARKER)


def is_claimed(core) -> bool:
    return bool(core.settings.get("claimed")) and not os.path.exists(_marker(core))


def mark_unclaimed(core) -> None:
    path = _marker(core)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, b"")
