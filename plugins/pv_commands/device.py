"""Device facts the pre-checks need: config flags, remote mode, claim state.

* A config flag is asked through ``pv_config_get``; when no plugin
  answers, the upstream default applies.
* Remote mode: there is no Hub here, so the device starts local (as the
  metadata plugin's ``pantavisor.mode`` says); GO_REMOTE makes it remote until
  pvcore restarts or a ``locals/`` revision is run (unless
  ``PV_CONTROL_REMOTE_ALWAYS`` is on; docs/protocol.md §D1.5).
* Claim state: there is no Hub here, so a device is claimed only when the
  ``claimed`` setting says so and no UNCLAIM has been carried out since (the
  marker ``<storage>/pvcore/pv_commands/unclaimed`` records that, across
  restarts).
"""
from __future__ import annotations

import os
from typing import Any

from pvcore.fsutil import atomic_write

from pv_commands.state import CommandState

#: The marker in pv_commands' own folder (``core.data_dir``); releases before
#: declared ownership kept it in ``<storage>/cache/`` (moved at start-up).
UNCLAIMED_MARKER = "unclaimed"
LEGACY_MARKER = os.path.join("cache", "pvcore-unclaimed")


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
    return as_flag(core.call("pv_config_get", key=key), default)


def is_remote(cstate: CommandState) -> bool:
    return cstate.remote


def _marker(core) -> str:
    return os.path.join(core.data_dir("pv_commands"), UNCLAIMED_MARKER)


def migrate_marker(core) -> None:
    """Move the unclaimed marker of an earlier release out of ``cache/``."""
    old = os.path.join(core.settings.storage_dir, LEGACY_MARKER)
    if os.path.exists(old):
        os.replace(old, _marker(core))


def is_claimed(core) -> bool:
    return bool(core.settings.get("claimed")) and not os.path.exists(_marker(core))


def mark_unclaimed(core) -> None:
    path = _marker(core)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, b"")
