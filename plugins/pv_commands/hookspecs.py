"""The command contract, owned by pv_commands (docs/architecture.md §3).

pv_commands owns the one command slot of ``POST /commands`` (docs/protocol.md
§7.6): it parses and accepts a command, then its worker thread hands each op
to the plugin that owns the state the op changes, through
:func:`pv_commands_run`. Power ops (reboot, poweroff) and the device's
remote/claimed mode are pv_commands' own. It publishes ``command.accepted``
when a command takes the slot and ``command.finished`` when it was carried
out (``data``: ``payload``, ``ok``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import pluggy

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from pvcore.app import Core

hookspec = pluggy.HookspecMarker("pvcore")


@hookspec(firstresult=True)
def pv_commands_run(core: "Core", op: str, payload: str) -> Optional[bool]:
    """Carry out the accepted command ``op``, if this plugin owns it. *firstresult*

    :param op: one of the ops of docs/protocol.md §7.6 (``LOCAL_RUN``,
        ``RUN_GC``, ``XCONNECT_GRAPH``, ``UPDATE_METADATA`` …).
    :param payload: the payload string as sent (``UPDATE_METADATA``: the
        JSON text of the object).
    :return: ``None`` when the op is not this plugin's; else ``True`` when it
        succeeded, ``False`` when it failed (logged, not retried).

    Fired from pv_commands' worker thread, one op at a time: an
    implementation may block until the op is done.
    """


@hookspec(firstresult=True)
def pv_commands_power_backend(core: "Core") -> Any:
    """How the device reboots and powers off. *firstresult*

    :return: an object with ``reboot(message)`` and ``poweroff(message)``,
        and optionally ``demo`` (true when ``reboot`` does not reboot a real
        device: a reboot transition then runs in place instead, docs/protocol.md
        §D3.4). pv_commands' own (``trylast``) follows the ``power_backend`` setting.
    """


@hookspec(firstresult=True)
def pv_commands_update_ongoing(core: "Core") -> Optional[bool]:
    """Is a revision update in flight? *firstresult*

    Answered by the owner of revisions. While it is, the ops that may not
    interrupt an update (reboot, poweroff, another transition, unclaim) are
    refused with 503 and ``Retry-After: 600``, and dropped if already queued
    (docs/protocol.md §7.6).
    """
