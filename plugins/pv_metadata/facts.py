"""Device-meta keys other plugins own, written from the events their owners publish.

A plugin that owns a device fact (the running revision, its status, the
device's mode, whether it is claimed) declares the key with a
:class:`pvcore.ownership.MetaFact` naming the event that carries it; this
store writes the key from that event and from nothing else — the periodic
refresh writes only pv_metadata's own keys (docs/architecture.md §2).

Writing a key is file I/O with fsync, so it never runs in the publisher's
thread: events are queued to this service's own thread, in order.
"""
from __future__ import annotations

import queue
import threading
from typing import Optional

import structlog

from pvcore.services import Service

log = structlog.get_logger(__name__)

_STOP = object()


class FactWriter(Service):
    """Writes the device-meta keys carried by owners' events, on its own thread.

    Events that arrive before :meth:`start` wait in the queue.
    """

    name = "devmeta-facts"
    priority = 15  # before the refresh (20) and whatever publishes at start

    def __init__(self, core, write):
        self._core = core
        self._write = write  # (key, value or None) -> None
        self._queue: "queue.Queue" = queue.Queue()
        self._thread: Optional[threading.Thread] = None

    def heard(self, event) -> None:
        """An event some key's owner declared: queue the keys it carries."""
        for key, (_owner, fact) in self._core.ownership.meta_facts().items():
            if fact.event == event.type:
                self._queue.put((key, fact.value(event)))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(10)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self._write(*item)
            except Exception:  # a full disk must not end the thread
                log.exception("devmeta_fact_write_failed", key=item[0])
