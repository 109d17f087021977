"""The xconnect service graph as a pure function of a revision model (docs/protocol.md §D8.3).

Providers declare exports in ``<c>/services.json``, consumers requirements in
``<c>/run.json`` under ``services.required`` and ``services.optional``; the
revision model (``pv_steps_revision``) reads both: each container's
``exports`` and ``requirements``. Every requirement is linked to every export
of the same name, in any container (itself included): matching is by name
only, the link's type comes from the export, and there is no de-duplication.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

#: Export types upstream knows; anything else is reported as ``unknown``.
TYPES = ("rest", "dbus", "unix", "drm", "wayland", "input")


def _pid(pids: Mapping[str, Any], name: str) -> int:
    pid = pids.get(name)
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else -1


def _text(value: Any, default: Optional[str]) -> Optional[str]:
    return value if isinstance(value, str) and value else default


def build_graph(revision: Any, pids: Optional[Mapping[str, Any]] = None) -> List[Dict[str, Any]]:
    """The ``GET /xconnect-graph`` links of ``revision`` (its model), in state order.

    :param pids: container → init pid; missing or ``None`` pids become -1.
    """
    pids = pids if isinstance(pids, Mapping) else {}
    containers = list(revision.containers.values())
    provided = [(provider.name, export) for provider in containers for export in provider.exports]
    links = []
    for container in containers:
        consumer = container.name
        for req in container.requirements:
            for provider, export in provided:
                if export["name"] != req["name"]:
                    continue
                type_ = export.get("type") if export.get("type") in TYPES else "unknown"
                links.append({
                    "consumer": consumer,
                    "consumer_pid": _pid(pids, consumer),
                    "provider": provider,
                    "provider_pid": _pid(pids, provider),
                    "name": req["name"],
                    "type": type_,
                    "role": _text(req.get("role"), "any"),
                    "interface": _text(req.get("interface"), type_),
                    "target": _text(req.get("target"), None),
                    "socket": _text(export.get("socket"), None),
                })
    return links

