"""The daemon supervision contract, owned by pv_daemons (docs/architecture.md §3).

pv_daemons runs Pantavisor's internal daemons as supervised process groups
(respawned with backoff, logs under ``<storage>/logs/daemons``). Any plugin
contributes a daemon by answering :func:`pv_daemons_declare`; the daemon's
state (running, pid, respawns) is pv_daemons', changed only through
:func:`pv_daemons_control`, :func:`pv_daemons_signal` and ``PUT /daemons``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import pluggy

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from pvcore.app import Core
    from pvcore.services import DaemonSpec

hookspec = pluggy.HookspecMarker("pvcore")


@hookspec
def pv_daemons_declare(core: "Core") -> Sequence["DaemonSpec"]:
    """Daemons this plugin wants supervised.

    :return: :class:`pvcore.services.DaemonSpec` objects (name, argv, env,
        autostart). Collected once, when the daemon table is first built;
        names must be unique across plugins.
    """


@hookspec(firstresult=True)
def pv_daemons_control(core: "Core", name: str, action: str) -> Optional[bool]:
    """Start or stop daemon ``name``; ``action`` is ``start``, ``stop`` or ``restart``. *firstresult*

    :return: ``True`` when done, ``None`` when no such daemon exists.
    """


@hookspec(firstresult=True)
def pv_daemons_signal(core: "Core", name: str, signum: int) -> Optional[bool]:
    """Send signal ``signum`` to daemon ``name`` if it runs. *firstresult*

    :return: ``True`` when delivered, ``False`` when the daemon is not
        running, ``None`` when no such daemon exists.
    """
