"""The metadata contract, owned by pv_metadata (docs/architecture.md §3).

pv_metadata holds user and device metadata (persisted one file per key).
Other plugins read user metadata and the metadata views through these hooks.
Device-meta keys a plugin owns are declared with
:class:`pvcore.ownership.MetaFact` and written from that plugin's events
(docs/architecture.md §2); every change is published as a ``meta.user`` / ``meta.device`` event
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



@hookspec(firstresult=True)
def pv_metadata_views(core: "Core", container: Optional[str]) -> Optional[Mapping[str, str]]:
    """The run-dir directories showing metadata to a container, one file per key. *firstresult*

    For runtimes, which bind them read-only into a container at
    ``/pantavisor/user-meta`` and ``/pantavisor/device-meta``
    (docs/protocol.md §D4.9). The directories exist when this returns and
    stay while pvcore runs (emptied, never removed), so a bind mount of one
    keeps seeing its changes.

    :param container: ``None`` for every key (what mgmt containers see), or
        a container's name for its own keys: ``<container>.<sub>`` shown as
        ``<sub>``.
    :return: ``{"user-meta": dir, "device-meta": dir}``; ``None`` for a name
        that cannot be a directory.
    """
