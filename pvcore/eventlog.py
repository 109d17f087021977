"""``GET /_pvcore/events``: the device's events as a stream, with replay.

Every published event (:meth:`pvcore.app.Core.publish`) lands in a ring buffer
of ``events_buffer`` entries, serialised once. A watcher is a cursor into that
buffer: the stream hub (:mod:`pvcore.streams`) pulls the lines after the cursor
whenever the watcher's socket can take more, so a thousand events cost a slow
watcher no memory of its own. A cursor that the buffer has overrun, or a
``?since=`` older than the buffer, gets one explicit ``pvcore.gap`` record
instead of silently skipping (docs/plugins.md, "The stream").

The wire format is NDJSON: one event per line, exactly its JSON form.
"""
from __future__ import annotations

import re
import threading
import time
from typing import List, Optional, Sequence, Tuple

import structlog

from pvcore import hookimpl
from pvcore.stash import StashKey
from pvcore.body import dumps
from pvcore.errors import BadRequest
from pvcore.ownership import Owns
from pvcore.query import int_param
from pvcore.streams import HUB, CHUNK, Source, StreamHub, open_stream

log = structlog.get_logger(__name__)

NDJSON = "application/x-ndjson"
#: The record standing for events a watcher can no longer get.
GAP = "pvcore.gap"
_TYPE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: Longest line kept; a bigger event keeps its id, type and subject, and its
#: data becomes ``{"truncated": true, "size": n}`` (the buffer stays within
#: ``events_buffer`` × this).
MAX_LINE = 16 * 1024


class EventLog:
    """The last ``size`` events, by id, each as its NDJSON line.

    Ids are consecutive (the core numbers every event under one lock), so
    event ``i`` sits in slot ``i % size``.
    """

    def __init__(self, size: int, first_id: int):
        self.size = max(1, size)
        self.first_id = first_id
        self.last_id = first_id - 1
        self._slots: List[Optional[Tuple[int, str, bytes]]] = [None] * self.size
        self.lock = threading.Lock()

    def append(self, event) -> None:
        record = event.as_json()
        line = dumps(record) + b"\n"
        if len(line) > MAX_LINE:
            record["data"] = {"truncated": True, "size": len(line)}
            record["subject"] = record["subject"][:1024]
            line = dumps(record) + b"\n"
        with self.lock:
            self._slots[event.id % self.size] = (event.id, event.type, line)
            self.last_id = max(self.last_id, event.id)

    def oldest_id(self) -> int:
        """The oldest id still held (``last_id + 1`` when empty)."""
        return max(self.first_id, self.last_id - self.size + 1)

    def read(self, cursor: int, match, limit: int) -> Tuple[bytes, int]:
        """Lines of the events after ``cursor`` that ``match``, about ``limit``
        bytes at most, and the new cursor.

        A cursor older than the buffer, or unknown to this worker, first
        yields one ``pvcore.gap`` record and moves past what was lost.
        """
        out: List[bytes] = []
        size = 0
        with self.lock:
            last = self.last_id
            oldest = self.oldest_id()
            if cursor > last or cursor < oldest - 1:
                resume = oldest if cursor < oldest - 1 else last + 1
                out.append(gap_line(cursor, resume))
                cursor = resume - 1
            for event_id in range(cursor + 1, last + 1):
                slot = self._slots[event_id % self.size]
                cursor = event_id
                if slot is None or slot[0] != event_id or not match(slot[1]):
                    continue
                out.append(slot[2])
                size += len(slot[2])
                if size >= limit:
                    break
        return b"".join(out), cursor


def gap_line(since: int, resume: int) -> bytes:
    """The record for events ``since+1 .. resume-1``, lost to this watcher.

    Its ``id`` is the last id it stands for, so a client that resumes with
    ``?since=<last id seen>`` never meets the same gap twice.
    """
    return dumps({"id": resume - 1, "time": time.time(), "type": GAP, "subject": "",
                  "data": {"since": since, "next": resume}}) + b"\n"


def type_matcher(types: Sequence[str]):
    """``types`` entries match a type exactly or as a prefix of dotted
    parts: ``container`` matches ``container.status``. Empty matches all."""
    if not types:
        return lambda kind: True
    exact = frozenset(types)
    prefixes = tuple(t + "." for t in types)
    return lambda kind: kind in exact or kind.startswith(prefixes)


class EventCursor(Source):
    """A watcher's position in the :class:`EventLog`."""

    def __init__(self, events: EventLog, cursor: int, types: Sequence[str]):
        self._events = events
        self.cursor = cursor
        self._match = type_matcher(types)

    def pull(self, limit: int) -> bytes:
        data, self.cursor = self._events.read(self.cursor, self._match, limit)
        return data


EVENTS = StashKey[EventLog]()


def parse_query(req, events: EventLog) -> Tuple[int, List[str]]:
    """``?since=`` and ``?types=`` as a starting cursor and a type list."""
    raw = req.params.get("types")
    parts = [raw] if isinstance(raw, str) else list(raw or ())
    types = [t.strip() for part in parts for t in part.split(",") if t.strip()]
    for kind in types:
        if not _TYPE.match(kind):
            raise BadRequest("Invalid types")
    since_id = int_param(req, "since", 10 ** 18 - 1)
    if since_id is None:
        return events.last_id, types
    # since=0: everything this worker still holds.
    return (events.first_id - 1 if since_id == 0 else since_id), types


class EventStream:
    """``GET /_pvcore/events[?since=ID][&types=a,b]`` (mgmt): NDJSON, endless."""

    def __init__(self, core):
        self._core = core

    def on_get(self, req, resp):
        events = self._core.stash[EVENTS]
        cursor, types = parse_query(req, events)
        source = EventCursor(events, cursor, types)
        if open_stream(self._core, req, resp, source, NDJSON, "events"):
            return
        # Not a connection the hub can take over: what the buffer holds now.
        chunks = []
        while True:
            chunk = source.pull(CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
        resp.content_type = NDJSON
        resp.data = b"".join(chunks)


@hookimpl
def pvcore_startup(core):
    settings = core.settings
    core.stash[EVENTS] = EventLog(settings.get("events_buffer"), core.first_event_id)
    core.stash[HUB] = StreamHub(settings.get("max_watchers"), settings.get("stream_stall_timeout"))


@hookimpl
def pvcore_services(core):
    return [core.stash[HUB]]


@hookimpl
def pvcore_declare_ownership():
    return Owns(listens=None)  # every event: the stream's watchers choose (?types=)


@hookimpl(tryfirst=True)
def pvcore_event(core, event):
    # NOTE: runs in the publisher's thread, under the core's publish lock:
    # one serialisation and a wake-up, never a write to a socket.
    core.stash[EVENTS].append(event)
    core.stash[HUB].notify()


@hookimpl
def pvcore_routes(core):
    return [("/_pvcore/events", EventStream(core))]
