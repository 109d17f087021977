"""The metadata contract, owned by pv_metadata (docs/architecture.md §3).

pv_metadata holds user and device metadata (persisted one file per key).
Other plugins read user metadata through this hook. Device metadata keys a
plugin owns are declared with :class:`pvcore.ownership.MetaFact` and written
from that plugin's events (docs/architecture.md §2); every change is published as a ``meta.user`` / ``meta.device`` event
(``data["value"]`` is the new value, ``None`` when deleted).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Optional

import pluggy

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from pvcore.app import Core

hookspec = pluggy.HookspecMarker("pvcore")


@hookspec(firstresult=True)
def pv_metadata_user(core: "Core") -> Optional[Mapping[str, str]]:
    """A snapshot of the user metadata, key to value. *firstresult*"""

