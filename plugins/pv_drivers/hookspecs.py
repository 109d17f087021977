"""The driver loader contract, owned by pv_drivers (docs/architecture.md §3)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from pvcore.app import Core

hookspec = pluggy.HookspecMarker("pvcore")


@hookspec(firstresult=True)
def pv_drivers_loader(core: "Core") -> Any:
    """The kernel module loader drivers are loaded with. *firstresult*

    :return: an object with ``load(module, args) -> bool`` and
        ``unload(module) -> bool``. pv_drivers' own (``trylast``) runs
        ``modprobe`` or, on the demo device, records the calls without
        touching the kernel; a board plugin may return its own.
    """
