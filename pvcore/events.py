"""Device events: one record per state change, published by the plugin that
owns the state and heard by anyone who implements ``pvcore_event``.

A plugin publishes with :meth:`pvcore.app.Core.publish` (which numbers and
timestamps the event, then fires the ``pvcore_event`` hook); it never calls the
hook directly, so ids stay strictly increasing across threads.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import threading
import time
from typing import Any, Mapping, Optional


@dataclasses.dataclass(frozen=True)
class Event:
    """One state change.

    :ivar id: strictly increasing, across worker restarts too: a worker's
        first id is the microseconds since the epoch at its start, so an id
        a client kept from an earlier worker is older than any of the new
        one's (a ``?since=`` replay then reports the gap, docs/plugins.md).
    :ivar time: wall-clock seconds since the epoch when it was published.
    :ivar type: dotted kind, owner first: ``container.status``,
        ``revision.progress``, ``meta.user`` … (docs/plugins.md lists the
        built-in types; a plugin may publish its own, prefixed by its name).
    :ivar subject: what changed: a container, revision, key, daemon name.
    :ivar data: JSON-serialisable details (``{"old": ..., "new": ...}``).
    """

    id: int
    time: float
    type: str
    subject: str
    data: Mapping[str, Any]

    def as_json(self) -> dict:
        """The wire form (docs/protocol.md, ``/_pvcore/events``)."""
        return {"id": self.id, "time": self.time, "type": self.type,
                "subject": self.subject, "data": dict(self.data)}


class EventCounter:
    """Hands out ids; the lock makes id order equal publication order.

    :ivar first: the first id this counter hands out.
    """

    def __init__(self, first: Optional[int] = None) -> None:
        self.first = time.time_ns() // 1000 if first is None else first
        self._ids = itertools.count(self.first)
        # NOTE: held only to number and queue an event, never while
        # listeners run (see Core.publish).
        self.lock = threading.Lock()
        #: notified (under ``lock``) each time an event has been delivered
        self.delivered_cond = threading.Condition(self.lock)
        self.pending: "collections.deque[Event]" = collections.deque()
        self.delivering = False
        #: the thread delivering, while one is
        self.deliverer: Optional[int] = None
        #: id of the last event every listener has seen
        self.delivered = self.first - 1

    def make(self, type: str, subject: str, data: Mapping[str, Any]) -> Event:
        return Event(next(self._ids), time.time(), type, subject, dict(data or {}))
