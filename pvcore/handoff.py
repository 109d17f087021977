"""A listener's own thread: where ``pvcore_event`` listeners put their I/O.

Listeners run in the publisher's thread and must never block
(:func:`pvcore.hookspecs.pvcore_event`); one that writes or deletes files
queues the work here and returns (docs/plugins.md, "Listening to events").
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Optional

import structlog

from pvcore.services import Service

log = structlog.get_logger(__name__)

_STOP = object()


class HandOff(Service):
    """Runs ``work(item)`` for each :meth:`put` item, in order, on one thread.

    Items put before :meth:`start` wait; an exception is logged and the
    thread goes on. Return it from ``pvcore_services`` to have it started
    and stopped with the worker; :meth:`stop` finishes what was queued.

    :param name: the service's (and thread's) name.
    :param work: called with each item.
    """

    def __init__(self, name: str, work: Callable[[Any], None], priority: int = 15):
        self.name = name
        self.priority = priority
        self._work = work
        self._queue: "queue.Queue" = queue.Queue()
        self._thread: Optional[threading.Thread] = None

    def put(self, item: Any) -> None:
        """Queue ``item``; returns at once."""
        self._queue.put(item)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self._work(item)
            except Exception:
                log.exception("handoff_failed", service=self.name)
