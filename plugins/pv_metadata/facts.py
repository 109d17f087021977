"""Device-meta keys other plugins own, written from the events their owners publish.

A plugin that owns a device fact (the running revision, its status, the
device's mode, whether it is claimed) declares the key with a
:class:`pvcore.ownership.MetaFact` naming the event that carries it; this
store writes the key from that event and from nothing else — the periodic
refresh writes only pv_metadata's own keys (docs/architecture.md §2).

Writing a key is file I/O with fsync, so it never runs in the publisher's
thread: the keys are handed to this service's own thread, in order.
"""
from __future__ import annotations

from pvcore.handoff import HandOff


class FactWriter(HandOff):
    """Writes the device-meta keys carried by owners' events, on its own thread."""

    def __init__(self, core, write):
        super().__init__("devmeta-facts", lambda item: write(*item))
        self._core = core

    def heard(self, event) -> None:
        """An event some key's owner declared: queue the keys it carries."""
        for key, (_owner, fact) in self._core.ownership.meta_facts().items():
            if fact.event == event.type:
                self.put((key, fact.value(event)))
