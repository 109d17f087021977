"""Long-lived responses (``/_pvcore/events``, log follow) without a thread each.

gunicorn's gthread worker serves a request on one of its few threads until
the response body ends. A stream that lasts hours would hold that thread as
long, and a handful of them would starve every other caller. So a streaming
responder *takes the connection over* (docs/plugins.md, "Streams"):

1. it reserves a slot in the :class:`StreamHub` (``max_watchers`` at most; the
   next caller gets ``503`` with ``Retry-After``);
2. it duplicates the client socket's descriptor and hands the duplicate to the
   hub, then points the original descriptor at a dead socket, so gunicorn's
   own reply goes nowhere and gunicorn closes its side at once: the thread is
   back in the pool within the request;
3. the hub's one thread writes the response head and then the body, without
   blocking, to every stream it holds.

A stream's body comes from a :class:`Source`, pulled only when the socket can
take more, so a stream never holds more than one chunk in memory: event
sources read from the shared ring buffer, file sources from the file. A
client that stops reading (its socket stays full) for ``stream_stall_timeout``
seconds is dropped, as is one that closes its end.

Where the connection cannot be taken over (Falcon's test client, HTTP/2), the
responder answers what it has so far and ends (see :func:`open_stream`).
"""
from __future__ import annotations

import errno
import os
import selectors
import socket
import threading
import time
from typing import Dict, List, Optional

import structlog

from pvcore.caller import HOST
from pvcore.stash import StashKey
from pvcore.errors import Unavailable
from pvcore.services import Service
from pvcore.sources import FileFollower, Source, tail_offset  # noqa: F401 (re-exported)

log = structlog.get_logger(__name__)

#: Bytes pulled from a source at a time; also the most a stream buffers.
CHUNK = 1 << 16


class Stream:
    """One taken-over connection: its socket, source and pending bytes."""

    def __init__(self, sock: socket.socket, head: bytes, source: Source, label: str, request_id: str,
                 owner: Optional[str] = None):
        self.sock = sock
        self.owner = owner  # the caller holding its slot (StreamHub.reserve)
        self.source = source
        self.label = label
        self.request_id = request_id
        self.pending = head
        self.sent = 0
        self.ended = False
        self.last_progress = time.monotonic()
        self.next_poll = 0.0
        self.events = 0  # the selector mask it is registered with


class StreamHub(Service):
    """Owns every taken-over connection and writes to them from one thread.

    :param max_streams: concurrent streams (the ``max_watchers`` setting).
    :param stall_timeout: seconds a stream may stay unable to take more bytes.

    Slots are shared per caller (docs/architecture.md, "Connections"): a
    caller other than the host holds at most :attr:`per_caller` of them,
    and all of those callers together leave :attr:`host_reserve` to the
    host, so one container, mgmt or not, never takes the host's.
    """

    name = "streams"
    priority = 5  # up before plugins publish, down after them

    def __init__(self, max_streams: int, stall_timeout: float):
        self.max_streams = max_streams
        self.stall_timeout = stall_timeout
        #: slots only the host may take; and the most one other caller holds.
        self.host_reserve = self.per_caller = max(1, max_streams // 4)
        self._lock = threading.Lock()
        self._reserved = 0
        self._guests = 0  # slots held by callers other than the host
        self._by_owner: Dict[str, int] = {}
        self._incoming: List[Stream] = []
        self._streams: Dict[int, Stream] = {}
        self._wake_r: Optional[int] = None
        self._wake_w: Optional[int] = None
        self._woken = False
        self._thread: Optional[threading.Thread] = None
        self._stop = False
        self.running = False

    # -- called from request threads ----------------------------------------

    def reserve(self, owner: Optional[str] = None) -> None:
        """Take a slot for a stream about to open, for caller ``owner``
        (``None`` or ``"_pv_"``: the host).

        :raises Unavailable: the hub is full, or this caller's share is
            (503, ``Retry-After``), or the hub is not running.
        """
        with self._lock:
            if not self.running:
                raise Unavailable("Streams are not available yet", retry_after=1)
            if self._reserved >= self.max_streams:
                raise Unavailable("Too many watchers", retry_after=5)
            if not _is_host(owner):
                if (self._by_owner.get(owner, 0) >= self.per_caller
                        or self._guests >= self.max_streams - self.host_reserve):
                    raise Unavailable("Too many watchers", retry_after=5)
                self._by_owner[owner] = self._by_owner.get(owner, 0) + 1
                self._guests += 1
            self._reserved += 1

    def unreserve(self, owner: Optional[str] = None) -> None:
        """Give back a slot :meth:`reserve` took for a stream that never opened."""
        with self._lock:
            self._release(owner)

    def _release(self, owner: Optional[str]) -> None:
        # NOTE: called with self._lock held.
        self._reserved -= 1
        if not _is_host(owner):
            self._guests -= 1
            left = self._by_owner.get(owner, 0) - 1
            if left > 0:
                self._by_owner[owner] = left
            else:
                self._by_owner.pop(owner, None)

    def attach(self, stream: Stream) -> None:
        """Hand a reserved stream to the hub thread."""
        with self._lock:
            if not self.running:
                self._release(stream.owner)
                _close_quietly(stream)
                return
            self._incoming.append(stream)
        self.notify()

    def notify(self) -> None:
        """Wake the hub thread: sources may have more to send. Never blocks."""
        # NOTE: with no stream open there is nobody to wake; a stream that
        # opens later starts from its own cursor, and attach() wakes the hub.
        if self._woken or self._wake_w is None or (self._reserved == 0 and not self._stop):
            return
        self._woken = True
        try:
            os.write(self._wake_w, b"\0")
        except OSError:  # pipe full: a wake-up is pending anyway
            pass

    @property
    def open_streams(self) -> int:
        """Streams reserved or open (for ``/_pvcore/health``)."""
        return self._reserved

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = False
        with self._lock:
            self.running = True
        self._thread = threading.Thread(target=self._run, name="pvcore-streams", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self.running = False
        self._stop = True
        self._woken = False
        self.notify()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._wake_r = self._wake_w = None

    # -- the hub thread -------------------------------------------------------

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while not self._stop:
                for key, mask in sel.select(self._timeout()):
                    if key.data is None:
                        self._drain_wake()
                    elif mask & selectors.EVENT_READ:
                        self._on_readable(sel, key.data)
                self._adopt(sel)
                self._pump_all(sel)
        except Exception:  # pragma: no cover - a bug; streams must not take the worker down
            log.exception("stream_hub_failed")
        finally:
            for stream in list(self._streams.values()):
                self._drop(sel, stream, "shutdown")
            with self._lock:
                for stream in self._incoming:
                    self._release(stream.owner)
                    _close_quietly(stream)
                self._incoming = []
            sel.close()

    def _timeout(self) -> Optional[float]:
        now = time.monotonic()
        deadlines = []
        for stream in self._streams.values():
            if stream.pending:
                deadlines.append(stream.last_progress + self.stall_timeout)
            if stream.source.poll_interval is not None:
                deadlines.append(stream.next_poll)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except OSError:
            pass
        # NOTE: cleared only after the pipe is empty: a notify() that saw the
        # flag set between the read and here skipped its write, but what it
        # announced is picked up by the pump that follows.
        self._woken = False

    def _adopt(self, sel) -> None:
        with self._lock:
            incoming, self._incoming = self._incoming, []
        for stream in incoming:
            self._streams[stream.sock.fileno()] = stream
            stream.events = selectors.EVENT_READ
            sel.register(stream.sock, stream.events, stream)
            log.info("stream_opened", stream=stream.label, request_id=stream.request_id, open=len(self._streams))

    def _on_readable(self, sel, stream: Stream) -> None:
        # A streaming client has nothing more to say: input is discarded, and
        # end of input means it went away.
        try:
            data = stream.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sel, stream, "client_closed")

    def _pump_all(self, sel) -> None:
        now = time.monotonic()
        for stream in list(self._streams.values()):
            if stream.sock.fileno() < 0:
                continue
            try:
                self._pump(sel, stream, now)
            except Exception:
                log.exception("stream_failed", stream=stream.label)
                self._drop(sel, stream, "error")

    def _pump(self, sel, stream: Stream, now: float) -> None:
        progressed = False
        while True:
            if not stream.pending and not stream.ended:
                if stream.source.poll_interval is not None:
                    if now < stream.next_poll and not progressed:
                        break
                    stream.next_poll = now + stream.source.poll_interval
                chunk = stream.source.pull(CHUNK)
                if chunk is None:
                    stream.ended = True
                elif not chunk:
                    break
                else:
                    stream.pending = chunk
            if not stream.pending:
                if stream.ended:
                    self._drop(sel, stream, None)
                    return
                break
            try:
                sent = stream.sock.send(stream.pending)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._drop(sel, stream, "client_closed" if exc.errno in _GONE else "error")
                return
            if sent:
                stream.pending = stream.pending[sent:]
                stream.sent += sent
                stream.last_progress = now
                progressed = True
            if stream.pending:
                break  # the socket is full: wait until it is writable
        if stream.pending and now - stream.last_progress > self.stall_timeout:
            self._drop(sel, stream, "stalled")
            return
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if stream.pending else 0)
        if wanted != stream.events:
            stream.events = wanted
            sel.modify(stream.sock, wanted, stream)

    def _drop(self, sel, stream: Stream, reason: Optional[str]) -> None:
        if self._streams.pop(stream.sock.fileno(), None) is None:
            return
        try:
            sel.unregister(stream.sock)
        except (KeyError, ValueError):
            pass
        with self._lock:
            self._release(stream.owner)
        if reason in ("stalled", "error"):
            log.warning("stream_dropped", stream=stream.label, request_id=stream.request_id,
                        reason=reason, sent=stream.sent, pending=len(stream.pending))
        else:
            log.info("stream_closed", stream=stream.label, request_id=stream.request_id,
                     reason=reason or "complete", sent=stream.sent)
        _close_quietly(stream)


_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)


def _is_host(owner: Optional[str]) -> bool:
    return owner is None or owner == HOST


def _close_quietly(stream: Stream) -> None:
    try:
        stream.source.close()
    finally:
        try:
            stream.sock.close()
        except OSError:
            pass


HUB = StashKey[StreamHub]()


# ---------------------------------------------------------------------------
# Taking a connection over
# ---------------------------------------------------------------------------


def _takeover_socket(env) -> Optional[socket.socket]:
    """The client socket, if this server lets us take it over.

    Only gunicorn's HTTP/1.x connections qualify: an HTTP/2 connection
    carries other requests, and other servers do not expose the socket.
    """
    sock = env.get("gunicorn.socket")
    if sock is None or not env.get("SERVER_PROTOCOL", "").startswith("HTTP/1"):
        return None
    if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_STREAM:
        return None
    return sock


def _detach(sock: socket.socket) -> socket.socket:
    """Duplicate ``sock`` for the hub and leave the original pointing at a
    dead socket: gunicorn writes its own (empty) reply into nothing, sees
    ``EPIPE``, and closes its descriptor without touching the client."""
    mine = socket.socket(fileno=os.dup(sock.fileno()))
    dead, peer = socket.socketpair()
    peer.close()
    os.dup2(dead.fileno(), sock.fileno())
    dead.close()
    mine.setblocking(False)
    return mine


def _head(status: str, headers) -> bytes:
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name}: {value}" for name, value in headers]
    # NOTE: the body ends when the connection closes: HTTP/1.0 clients
    # (pvcurl through nc -U) and HTTP/1.1 clients read it the same way.
    lines += ["Connection: close", "Cache-Control: no-cache", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def open_stream(core, req, resp, source: Source, content_type: str, label: str, reserved: bool = False) -> bool:
    """Answer ``req`` with an endless body from ``source``.

    Call it last in a responder. It reserves a slot (unless ``reserved``:
    the caller already called ``hub.reserve(caller name)``, e.g. to refuse before doing
    work) and takes the connection over.

    :return: ``True`` when the hub took the connection; ``False`` when it
        cannot be taken over (not gunicorn, HTTP/2): the responder then
        answers normally with what the source has now.
    :raises Unavailable: too many streams (503 with ``Retry-After``).
    """
    hub: StreamHub = core.stash[HUB]
    caller = req.context.get("caller")
    owner = caller.name if caller is not None else None
    sock = _takeover_socket(req.env)
    if sock is None:
        if reserved:
            hub.unreserve(owner)
        return False
    if not reserved:
        hub.reserve(owner)
    try:
        mine = _detach(sock)
    except OSError:
        hub.unreserve(owner)
        source.close()
        raise
    request_id = req.context.get("request_id", "")
    head = _head("200 OK", [("Content-Type", content_type), ("X-Request-ID", request_id)])
    hub.attach(Stream(mine, head, source, label, request_id, owner))
    # gunicorn's reply goes to the dead socket; keep it short and final.
    resp.status = 200
    resp.data = b""
    resp.set_header("Connection", "close")
    return True
