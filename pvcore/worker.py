"""pvcore's gunicorn worker: gthread, fair to its callers, with pv-ctrl compatibility shims.

Connections are handled by :class:`pvcore.connections.FairThreadWorker`
(request heads read in the poll loop, per-caller caps, deadlines). The shims:

1. ``pvcontrol objects put`` sends ``Transfer-Encoding: identity`` together
   with a ``Content-Length`` (docs/protocol.md §1). libevent treats any non-chunked
   transfer coding as "use Content-Length"; gunicorn ≥ 24 refuses the request
   (RFC 9112 §6.3). Since ``identity`` means "no coding", dropping it before
   framing is safe and makes upstream's client work unmodified.
2. A request whose host (port removed) is not exactly ``localhost`` is
   dropped without an answer, as libevent's pv-ctrl does (docs/protocol.md
   §1); a missing or empty host is fine. The host is the absolute
   URI's (``GET http://evil/steps``) when it has one, else the ``Host``
   header's, as RFC 9112 §3.2.2 and libevent choose it.
3. A response whose application set ``Connection: close`` closes the
   connection after it (gunicorn drops hop-by-hop headers from applications
   and would keep the connection): framework errors and answers given
   without reading the body rely on it (docs/protocol.md §1).
4. ``Expect: 100-continue`` is answered when the application first reads
   the body, not before it runs: a request refused on its headers alone
   (an upload declaring more than the free space) gets its final answer with
   no ``100 Continue`` and the connection closes, so the client never sends
   the body (docs/protocol.md §1). Closing lingers over the rest of the body
   the client declared (:meth:`PvThreadWorker.linger_budget`; otherwise
   :data:`LINGER_DRAIN` bytes), so a client that sends its whole body before
   reading still gets the answer rather than a broken pipe.
5. Errors gunicorn raises itself (malformed request line, bad headers,
   ``Expect`` other than ``100-continue``) get libevent's framework error body
   ``{"Error": "Unsupported protocol"}`` (docs/protocol.md §3.3) instead of an HTML page.

NOTE: the shims patch gunicorn module attributes, but only inside the worker
process (``init_process``), which serves nothing but pvcore.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import socket
import sys
import time
from urllib.parse import urlsplit

from gunicorn import util
from gunicorn.http import wsgi
from gunicorn.http.body import LengthReader
from gunicorn.http.errors import NoMoreData
from gunicorn.http.message import Request
from gunicorn.http.parser import RequestParser
from pvcore.body import body_deadline
from pvcore.connections import FairThreadWorker
from pvcore.settings import Settings

FRAMEWORK_ERROR = b'{"Error": "Unsupported protocol"}'
#: Seconds between the worker's heartbeats to gunicorn's master.
NOTIFY_EVERY = 1.0
#: A response body up to this size leaves with its head in one write; a
#: larger one sends its first this many bytes with the head.
ONE_WRITE = 256 * 1024
#: Bytes a closing connection may still discard (gunicorn's default: 64 KiB);
#: its time limit (2 s) is unchanged.
LINGER_DRAIN = 4 << 20


def _identity_only(value: str) -> bool:
    return all(part.strip(" \t").lower() == "identity" for part in value.split(","))


class HostRejected(NoMoreData):
    """Raised to make gunicorn drop the connection without a reply."""

    def __str__(self):
        return f"request for host {self.buf!r} dropped"


def _host_allowed(value: str) -> bool:
    host = value.strip()
    if host.startswith("["):  # an IPv6 literal, never localhost
        return False
    return host.split(":", 1)[0] in ("", "localhost")


def _uri_host(uri: str) -> str:
    """The host of an absolute-form request target, port kept; ``""`` for ``/path``."""
    if uri.startswith("/") or "://" not in uri:
        return ""
    return urlsplit(uri).netloc.rpartition("@")[2]


class PvRequest(Request):
    """A gunicorn request that checks its host and ignores ``Transfer-Encoding: identity``."""

    def set_body_reader(self):
        host = _uri_host(self.uri)
        if host:
            if not _host_allowed(host):
                raise HostRejected(host)
        else:
            for name, value in self.headers:
                if name == "HOST" and not _host_allowed(value):
                    raise HostRejected(value)
        self.headers = [
            (name, value) for name, value in self.headers
            if not (name == "TRANSFER-ENCODING" and _identity_only(value))
        ]
        super().set_body_reader()
        if self._expected_100_continue:
            self._expected_100_continue = False  # gunicorn would send it before the app runs
            reader = self.body.reader
            if not (isinstance(reader, LengthReader) and reader.length == 0):
                self.body = ContinueOnRead(self.body, self.unreader.sock)


def write_framework_error(sock, status_int, reason, mesg):
    """libevent's error page: the contract's body, ``text/html``, connection closed."""
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: text/html\r\n"
        f"Content-Length: {len(FRAMEWORK_ERROR)}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + FRAMEWORK_ERROR)


class ContinueOnRead:
    """A request body that sends ``100 Continue`` just before its first read."""

    def __init__(self, body, sock):
        self._body = body
        self._sock = sock
        #: The client still waits for a go-ahead before sending the body.
        self.waiting = True

    def _go_ahead(self):
        if self.waiting:
            self.waiting = False
            self._sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    #: The answer left before the client was told to send its body.
    unasked = False

    def final_answer(self) -> bool:
        """The final response starts now; ``True`` if the body was never asked for."""
        waiting, self.waiting = self.waiting, False
        self.unasked = waiting
        return waiting

    def read(self, size=None):
        self._go_ahead()
        return self._body.read(size)

    def readline(self, size=None):
        self._go_ahead()
        return self._body.readline(size)

    def readlines(self, size=None):
        self._go_ahead()
        return self._body.readlines(size)

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration()
        return line

    def __getattr__(self, name):  # reader, failed, ... for gunicorn's own drain
        return getattr(self._body, name)


#: Linux's SO_SNDBUFFORCE (root may exceed ``net.core.wmem_max``).
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


@contextlib.contextmanager
def _send_room(sock, size: int):
    """Let one ``send`` queue all ``size`` bytes of a one-write answer.

    A Unix socket's send buffer (about 208 KiB, which also pays each
    packet's overhead) takes less than ONE_WRITE under memory pressure; the
    rest of the answer then waits until the reader drained three quarters
    of it, and a client that reads what has arrived and stops (``pvtx``)
    stored a cut state (docs/protocol.md §1). The buffer is raised for this
    write only: an answer the peer never reads holds no more than that.
    """
    if size <= 64 * 1024:
        yield
        return
    try:
        before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)  # the kernel's doubled value
        if before >= 2 * size + 65536:
            before = None
        else:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, size + 32768)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size + 32768)
    except OSError:
        before = None
    try:
        yield
    finally:
        if before is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, before // 2)
            except OSError:
                pass


class PvResponse(wsgi.Response):
    """A gunicorn response that leaves in one write where it fits, honours the
    application's ``Connection: close`` and closes when a ``100-continue``
    client was answered before its body.

    **One write.** gunicorn writes the head (``send_headers``), then each body
    item, then a file with ``sendfile``: two writes at least. A client that
    reads once after the head arrives (upstream's ``pvtx``) then sees an
    empty body (docs/protocol.md §1). Here the head is kept until the first
    body bytes and leaves with them; a file's first :data:`ONE_WRITE` bytes
    are read and leave with the head too (the rest, if any, by
    ``sendfile``). A response without a body gets its head from
    :meth:`close`, at once; an empty body item flushes the head as well.
    """

    _pending = None  # the head (and a whole small file), built but not yet sent

    def send_headers(self):
        if self.headers_sent:
            return
        tosend = self.default_headers()
        tosend.extend(["%s: %s\r\n" % (k, v) for k, v in self.headers])
        self._pending = ("%s\r\n" % "".join(tosend)).encode("latin-1")
        self.headers_sent = True

    def _send_with_head(self, data=b"") -> None:
        head, self._pending = self._pending, None
        if head is None:
            if data:
                self.sock.sendall(data)
        elif len(data) <= ONE_WRITE:
            with _send_room(self.sock, len(head) + len(data)):
                self.sock.sendall(head + data)
        else:  # no copy of a large body: the head leaves with its first part
            view = memoryview(data)
            with _send_room(self.sock, len(head) + ONE_WRITE):
                self.sock.sendall(head + view[:ONE_WRITE])
            self.sock.sendall(view[ONE_WRITE:])

    def write(self, arg):
        super().write(arg)
        if not arg and self._pending is not None:
            self._send_with_head()  # an empty item: the app wants the head out now

    def _emit_body(self, data):
        if self.chunked:
            data = b"%X\r\n%s\r\n" % (len(data), data)
        self._send_with_head(data)

    def sendfile(self, respiter):
        if self.cfg.is_ssl or not self.can_sendfile() or not util.has_fileno(respiter.filelike):
            return False
        fileno = respiter.filelike.fileno()
        try:
            offset = os.lseek(fileno, 0, os.SEEK_CUR)
            nbytes = self.response_length
            if nbytes is None:
                nbytes = os.fstat(fileno).st_size - offset
            first = b"" if self._omits_body else os.pread(fileno, min(nbytes, ONE_WRITE), offset)
        except (OSError, io.UnsupportedOperation):
            return False
        if self._omits_body:
            return super().sendfile(respiter)  # the head alone, and gunicorn's warning
        self.send_headers()
        rest = nbytes - len(first)
        if self.chunked and nbytes:
            first = b"%X\r\n%s" % (nbytes, first) + (b"" if rest else b"\r\n")
        self.sent += nbytes
        if not rest:  # the whole file: it leaves with close(), and a chunked end with it
            self._pending = (self._pending or b"") + first
            return True
        self._send_with_head(first)
        self.sock.sendfile(respiter.filelike, offset=offset + nbytes - rest, count=rest)
        if self.chunked:
            self.sock.sendall(b"\r\n")
        os.lseek(fileno, offset, os.SEEK_SET)
        return True

    def close(self):
        if not self.headers_sent:
            self.send_headers()
        tail = b"0\r\n\r\n" if self.chunked else b""
        if self._pending is not None or tail:
            self._send_with_head(tail)

    def process_headers(self, headers):
        super().process_headers(headers)
        for name, value in headers:
            if name.lower() == "connection" and value.strip(" \t").lower() == "close":
                self.must_close = True
        body = self.req.body
        if isinstance(body, ContinueOnRead) and body.final_answer():
            # RFC 9110 §10.1.1: answered without the content, so either read
            # it or close; the client may well never send it.
            self.must_close = True


def _take_priority(nice: int) -> None:
    """Run the worker (and the threads it starts) at ``nice``, when allowed.

    A container that connects in a loop competes with the worker's accept
    loop for the CPU; at equal priority it can keep the listen backlog full
    (docs/architecture.md, "Connections"). With autogroups (one per session,
    and every supervised child has its own) the scheduler weighs sessions
    first, so the worker's session is reprioritised too.
    """
    if not nice:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:  # not root: stays as it is
        return
    try:
        with open("/proc/self/autogroup", "w") as fh:
            fh.write(str(nice))
    except OSError:
        pass


class PvThreadWorker(FairThreadWorker):
    """``worker_class = "pvcore.worker.PvThreadWorker"``."""

    _next_notify = 0.0
    _quitting = False

    def notify(self):
        # PERF: gthread tells the master it is alive at every turn of its poll
        # loop (a utime() each); the master only needs it within ``timeout``
        # (30 s), so once a second is plenty.
        now = time.monotonic()
        if now >= self._next_notify:
            self._next_notify = now + NOTIFY_EVERY
            super().notify()

    def linger_budget(self, conn) -> int:
        """A request answered before its body was read (the early 507 of an
        upload over the free space) may still send the rest of the body it
        declared: a client that writes its whole body before reading must
        get the answer, not a broken pipe (docs/protocol.md §1). Other
        closes drain ``linger_bytes``. Time bounds the drain either way."""
        budget = self.linger_bytes
        body = getattr(getattr(conn.parser, "mesg", None), "body", None)
        if body is None or getattr(body, "unasked", False):  # told nothing, it sends nothing
            return budget
        reader = getattr(body, "reader", None)
        if isinstance(reader, LengthReader):
            budget = max(budget, reader.length)
        return budget

    def handle_quit(self, sig, frame):
        """SIGINT/SIGQUIT: stop now, without touching the thread pool in the handler.

        gthread's own shuts the pool down here. The handler runs in the main
        thread between two bytecodes, maybe inside ``tpool.submit``, which
        holds the pool's (non-reentrant) lock: the worker then hung until the
        master killed it, and a killed worker stops no container (seen once
        in a ``make run`` stopped with Ctrl-C). The pool is shut down by
        :meth:`run` once the loop has unwound.

        Only the first signal leaves: Ctrl-C sends SIGINT to the whole group
        and the master then sends SIGQUIT, which must not cut ``worker_exit``
        short while it stops the containers (gunicorn's own handler sleeps
        0.1 s for the second one, which a slower master misses).
        """
        if self._quitting:
            return
        self._quitting = True
        self.alive = False
        self.cfg.worker_int(self)
        sys.exit(0)

    def run(self):
        try:
            super().run()
        finally:
            self.tpool.shutdown(wait=False, cancel_futures=True)

    def init_process(self):
        settings = Settings()
        _take_priority(settings.worker_nice)
        self.header_timeout = settings.header_timeout
        self.io_timeout = settings.io_timeout
        body_deadline.seconds = settings.header_timeout  # a small body read in a thread, overall
        self.caller_threads = max(1, settings.caller_threads)
        self.caller_connections = max(1, settings.caller_connections)
        self.caller_connect_rate = max(0, settings.caller_connect_rate)
        self.init_fd_budget()
        RequestParser.mesg_class = PvRequest
        wsgi.Response = PvResponse
        util.close_graceful = functools.partial(util.close_graceful, max_drain=LINGER_DRAIN)
        self.linger_bytes = LINGER_DRAIN  # the poll loop's own graceful close, likewise
        util.write_error = write_framework_error
        super().init_process()
