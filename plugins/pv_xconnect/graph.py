"""The xconnect service graph as a pure function of a revision's state (docs/protocol.md §D8.3).

Providers declare exports in ``<c>/services.json`` (an object with
``services`` or a bare array); consumers declare requirements in
``<c>/run.json`` under ``services.required`` and ``services.optional``. Every
requirement is linked to every export of the same name, in any container
(itself included): matching is by name only, the link's type comes from the
export, and there is no de-duplication.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

#: Export types upstream knows; anything else is reported as ``unknown``.
TYPES = ("rest", "dbus", "unix", "drm", "wayland", "input")


def containers(state: Mapping[str, Any]) -> List[str]:
    """Container names in state order: every ``<c>/run.json`` but the BSP's."""
    names = []
    for key in state:
        name, sep, leaf = key.rpartition("/")
        if sep and leaf == "run.json" and name and "/" not in name and name != "bsp":
            names.append(name)
    return names


def exports(state: Mapping[str, Any], container: str) -> List[dict]:
    """The named exports of ``container`` (hosted-bus ``owns`` entries have no name)."""
    doc = state.get(container + "/services.json")
    if isinstance(doc, Mapping):
        doc = doc.get("services")
    if not isinstance(doc, list):
        return []
    return [e for e in doc if isinstance(e, Mapping) and isinstance(e.get("name"), str)]


def requirements(state: Mapping[str, Any], container: str) -> List[dict]:
    """Required then optional service requirements of ``container``."""
    run = state.get(container + "/run.json")
    services = run.get("services") if isinstance(run, Mapping) else None
    if not isinstance(services, Mapping):
        return []
    result: List[dict] = []
    for section in ("required", "optional"):
        items = services.get(section)
        if isinstance(items, str):  # older manifests: "a,b"
            items = [{"name": n.strip()} for n in items.split(",") if n.strip()]
        if isinstance(items, list):
            result.extend(r for r in items if isinstance(r, Mapping) and isinstance(r.get("name"), str))
    return result


def _pid(pids: Mapping[str, Any], name: str) -> int:
    pid = pids.get(name)
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else -1


def _text(value: Any, default: Optional[str]) -> Optional[str]:
    return value if isinstance(value, str) and value else default


def build_graph(state: Mapping[str, Any], pids: Optional[Mapping[str, Any]] = None) -> List[Dict[str, Any]]:
    """The ``GET /xconnect-graph`` links for ``state``.

    :param pids: container → init pid; missing or ``None`` pids become -1.
    """
    pids = pids if isinstance(pids, Mapping) else {}
    names = containers(state)
    provided = [(provider, export) for provider in names for export in exports(state, provider)]
    links = []
    for consumer in names:
        for req in requirements(state, consumer):
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

