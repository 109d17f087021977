"""Delivering an event to the listeners that subscribed to its type.

Each plugin's ``pvcore_event`` is called only for the types its declaration
lists (:attr:`pvcore.ownership.Owns.listens`; none listed: every event), so a
revision transition costs each listener only the events it acts on
(docs/architecture.md §3). One pluggy subset caller per event type, made on
the type's first event.
"""
from __future__ import annotations

import threading
from typing import Dict, Tuple

HOOK = "pvcore_event"


class Listeners:
    """Calls ``pvcore_event`` on the subscribers of an event's type.

    :ivar events: events delivered so far.
    :ivar calls: listener calls made so far (``/_pvcore/health`` shows both).
    """

    def __init__(self, pm, registry) -> None:
        self._pm = pm
        self._registry = registry
        self._callers: Dict[str, Tuple[object, int]] = {}
        self._lock = threading.Lock()
        self.events = 0
        self.calls = 0

    def _caller(self, kind: str) -> Tuple[object, int]:
        found = self._callers.get(kind)
        if found is None:
            impls = getattr(self._pm.hook, HOOK).get_hookimpls()
            registry = self._registry
            deaf = [impl.plugin for impl in impls
                    if registry is not None and not registry.subscribed(impl.plugin_name, kind)]
            caller = self._pm.subset_hook_caller(HOOK, remove_plugins=deaf) if deaf else getattr(self._pm.hook, HOOK)
            found = (caller, len(impls) - len(deaf))
            with self._lock:
                self._callers[kind] = found
        return found

    def deliver(self, core, event) -> None:
        """Call every subscriber of ``event.type`` (in the publisher's thread)."""
        caller, count = self._caller(event.type)
        self.events += 1
        self.calls += count
        if count:
            caller(core=core, event=event)
