"""No caller can starve the others: gthread with reads in the poll loop and per-caller caps.

gunicorn's gthread worker gives every new connection a thread that blocks
reading the request head, and the body, and writing the response. Its
threads are few (``threads``), so a handful of callers that stop mid-request
(partial headers, a body trickling at 1 byte/s, a download never read, idle
connections) hold all of them and every other caller waits. Since callers
are the device's own containers, :class:`FairThreadWorker` changes where
and for whom threads are spent (docs/architecture.md, "Connections"):

1. **The request head is read in the poll loop**, without blocking, together
   with a body of at most ``SMALL_BODY`` bytes (every JSON body pv-ctrl
   takes). Only a complete request goes to a thread, so partial headers,
   trickled small bodies and idle keep-alives hold no thread at all. A
   connection has ``header_timeout`` seconds to deliver that much; then it
   is closed without an answer (libevent does the same).
2. **Per-caller caps.** At accept, the caller is identified once from the
   peer (the app's own identification, ``worker.caller_key``): a container
   by its name, so all its processes share its caps. A caller may hold at
   most ``caller_threads`` threads; its further complete requests wait in the
   poll loop (holding no thread) until one of its own finishes. A caller
   may keep at most ``caller_connections`` connections open; more are
   closed at accept. Callers other than the host together hold at most
   three quarters of the threads and connections, and non-mgmt callers
   half of them (pvcore/shares.py): however many containers are stuck at
   their caps, the host and a mgmt container find a thread. One container
   can only ever slow itself down.
3. **Deadlines in threads.** What a thread still does for a slow peer — a
   large body (an object upload), a large response (a download) — waits at
   most ``io_timeout`` seconds for the peer to make progress
   (:class:`pvcore.peersocket.PeerSocket`); then the request ends as if the peer had gone.

4. **A container's own socket.** A runtime binds each container a socket of
   its own (pvcore/ctrlsockets.py); the worker accepts on it beside the main
   one (:meth:`FairThreadWorker.add_listener`), counting whatever arrives
   there as that container's without reading ``/proc``. A container over
   its connection rate is not accepted from for :data:`LISTENER_PAUSE`
   seconds: its own backlog fills and only its own connects fail, while
   the host's socket stays empty.

The thread pool is FIFO across callers; the caps keep any one caller from
filling it. Everything else (keep-alive, pipelining, HTTP/1.0, half-closed
sockets, ``Expect: 100-continue``) is gunicorn's own behaviour.
"""
from __future__ import annotations

import errno
import re
import resource
import selectors
import socket
import struct
import time
from collections import defaultdict, deque
from functools import partial
from typing import Callable, Deque, Dict, Hashable, Optional

import structlog
from gunicorn import http
from gunicorn.workers.gthread import TConn, ThreadWorker

from pvcore.linger import LingeringClose
from pvcore.peersocket import PeerSocket
from pvcore.ownlisteners import UNSEEN as _UNSEEN, OwnListeners
from pvcore.shares import ThreadShares, guests_share, privileged, tenants_share

log = structlog.get_logger(__name__)

#: accept() errors that mean "no file descriptor (or memory) for one more connection".
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
#: File descriptors kept for everything but connections (files, pipes, children's logs).
FD_RESERVE = 256
#: File descriptors one connection may take: its socket, the pidfd that pins
#: its caller (pvcore/caller.py), a file it is being sent.
FDS_PER_CONNECTION = 3
#: A body up to this size is read in the poll loop with the head.
SMALL_BODY = 64 * 1024
#: A head not complete after this many bytes is handed to the parser as is
#: (which refuses it with gunicorn's limits: 414, 431, 400).
MAX_HEAD = 64 * 1024
_RECV = 64 * 1024
#: Seconds a stopping worker lets requests in threads finish before it cuts
#: them off (well inside gunicorn's graceful_timeout, 30 s).
STOP_GRACE = 10.0
_CONTENT_LENGTH = re.compile(rb"\r?\ncontent-length[ \t]*:[ \t]*(\d+)[ \t]*\r?\n", re.I)
_TRANSFER_ENCODING = re.compile(rb"\r?\ntransfer-encoding[ \t]*:", re.I)
_EXPECT = re.compile(rb"\r?\nexpect[ \t]*:", re.I)
_PEERCRED = struct.Struct("3i")


class PvConn(TConn):
    """gunicorn's connection, plus its caller key and read-ahead buffer.

    A graceful close (after ``Connection: close``) lingers in the poll loop:
    gunicorn's own blocks the loop for up to 2 s on a peer that never closes.
    """

    def __init__(self, worker, key, *args):
        super().__init__(*args)
        self.pv_worker = worker
        self.pv_key = key
        self.pv_closed = False
        self.pv_buf = bytearray()
        self.pv_eof = False

    def close(self, graceful=False):
        if graceful:
            self.pv_worker._linger(self)
        else:
            self.pv_worker._forget(self)
            super().close()


#: Connections accepted per turn of the poll loop at most (the rest at the next turn:
#: a longer batch delays the requests already read; fewer let a flood refill the backlog).
ACCEPT_BATCH = 512
#: Seconds a pid's caller key is remembered for shedding.
PID_KEY_TTL = 1.0


def _peer_pid(sock) -> Optional[int]:
    try:
        pid, _uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    except OSError:
        return None
    return pid or None


def peer_uid(sock) -> Hashable:
    """The default caller key: the peer's uid (``SO_PEERCRED``)."""
    try:
        _pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    except OSError:
        return None
    return ("uid", uid)


def request_ready(buf: bytes, eof: bool) -> bool:
    """Whether ``buf`` holds what a thread needs to serve without waiting.

    That is a complete head plus, for a ``Content-Length`` body of at most
    :data:`SMALL_BODY`, the whole body. A chunked body, a large one, or one
    the client will only send after ``100 Continue`` is read by the thread.
    """
    end = buf.find(b"\r\n\r\n")
    size = 4
    if end < 0:
        end, size = buf.find(b"\n\n"), 2
    if end < 0:
        return eof or len(buf) >= MAX_HEAD
    head = buf[:end + size]
    if eof or _TRANSFER_ENCODING.search(head) or _EXPECT.search(head):
        return True
    match = _CONTENT_LENGTH.search(head)
    if match is None:
        return True
    length = int(match.group(1))
    return length > SMALL_BODY or len(buf) - len(head) >= length


class FairThreadWorker(LingeringClose, OwnListeners, ThreadShares, ThreadWorker):
    """gthread, reading heads in its poll loop and capping each caller (module docstring).

    :ivar caller_key: ``function(sock) -> key``; callers with equal keys share
        their caps. pvcore's ``post_worker_init`` sets it, and ``container_key``,
        to the app's caller identification; the default is the peer's uid.
    """

    caller_key: Callable = staticmethod(peer_uid)
    #: ``function(name) -> key`` of the container owning a socket of its own.
    container_key: Callable = staticmethod(str)
    #: the host's caller key: the other callers together hold at most three
    #: quarters of the threads, so the host always finds one. ``None``: no reserve.
    host_key: Optional[Hashable] = None
    header_timeout = 10.0
    io_timeout = 10.0
    caller_threads = 4
    caller_connections = 128
    #: new connections a caller may open per second (and in a burst); beyond
    #: that they are closed at accept, before any identification. 0: no limit.
    caller_connect_rate = 500

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._reading: Dict[TConn, float] = {}  # conn -> deadline of its head
        self._in_threads: Dict[Hashable, int] = defaultdict(int)
        self._waiting: Dict[Hashable, Deque[TConn]] = defaultdict(deque)
        self._open: Dict[Hashable, int] = defaultdict(int)
        self._in_thread = set()  # connections a thread is serving
        self._guests = self._tenants = 0  # requests in threads, pvcore/shares.py
        self._guests_open = self._tenants_open = 0  # connections of the same callers
        self._pid_keys: Dict[int, tuple] = {}  # pid -> (caller key, valid until)
        self._buckets: Dict[Hashable, tuple] = {}  # caller key -> (tokens, when)
        self._shed_count: Dict[Hashable, int] = {}  # connections shed / refused since the last report
        self._refused: Dict[Hashable, int] = {}
        self._next_report = 0.0
        self._stopping_since: Optional[float] = None

    def init_fd_budget(self) -> None:
        """Fit ``worker_connections`` to the file descriptors the worker may open.

        Raises the soft ``RLIMIT_NOFILE`` to the hard one, then allows at most
        as many connections as fit beside :data:`FD_RESERVE`. gthread stops
        accepting at ``worker_connections``; callers other than the host
        stop at three quarters of it (:meth:`_admit`). Without this, a few
        containers holding connections made ``accept()`` fail with
        ``EMFILE`` and the worker died, and every container with it.
        """
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft == resource.RLIM_INFINITY or soft > hard:
            soft = hard
        if soft < hard:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                soft = hard
            except (OSError, ValueError):
                pass
        fit = max(8, (soft - FD_RESERVE) // FDS_PER_CONNECTION)
        if fit < self.worker_connections:
            log.info("worker_connections_fitted", worker_connections=fit, nofile=soft)
            self.worker_connections = fit
            self.max_keepalived = max(0, fit - self.cfg.threads)

    # -- accepting -------------------------------------------------------------

    def accept(self, listener):
        """Accept everything waiting in the backlog (up to :data:`ACCEPT_BATCH`).

        gunicorn accepts one connection per poll; a container opening and
        closing connections in a loop then keeps the listen backlog full, and
        the host's ``curl`` fails at connect (``EAGAIN``). Draining it at
        every poll, and shedding a caller over its connection rate before any
        ``/proc`` read, keeps room for everyone else.
        """
        own = self._own_listeners.get(listener, _UNSEEN)
        for _ in range(ACCEPT_BATCH):
            try:
                fd, addr = listener._accept()
            except OSError as exc:
                if exc.errno in _OUT_OF_FDS:
                    # NOTE: gthread re-raises and the worker dies with every container;
                    # the budget (init_fd_budget) keeps this rare, the pause makes it harmless.
                    self._refused[("accept", errno.errorcode[exc.errno])] = \
                        self._refused.get(("accept", errno.errorcode[exc.errno]), 0) + 1
                    self._pause(listener)
                    return
                if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                    raise
                return
            if not self._admit(listener, fd, addr, own) and own is not _UNSEEN:
                self._pause(listener)  # the rest waits in its own backlog
                return

    def _admit(self, listener, fd: int, addr, key=_UNSEEN) -> bool:
        """Serve the connection ``fd``; ``False`` if its caller was over its rate."""
        sock = PeerSocket(listener.family, listener.type, listener.proto, fileno=fd)
        sock.io_timeout = self.io_timeout
        sock.deadline = None
        if key is not _UNSEEN:
            key = self.container_key(key)  # the container owning the socket
        else:
            key = self._cheap_key(sock)
        if key is _UNSEEN:
            try:
                key = self.caller_key(sock)
            except Exception:  # identification must never take the poll loop down
                log.exception("caller_key_failed")
                key = None
            self._remember_key(sock, key)
        if self._shed(key):
            sock.close()
            return False
        guest = self.host_key is not None and key != self.host_key
        tenant = guest and not privileged(key)
        if guest and (self._guests_open >= guests_share(self.worker_connections, 4) or
                      tenant and self._tenants_open >= tenants_share(self.worker_connections)):
            # the last quarter of the connections is the host's, a quarter more the mgmt containers'
            self._refused[key] = self._refused.get(key, 0) + 1
            sock.close()
            return False
        if self._open[key] >= self.caller_connections:
            # NOTE: counted, logged once a second (_report_shed): a log line
            # per refused connection would be the flood's best amplifier.
            self._refused[key] = self._refused.get(key, 0) + 1
            sock.close()
            return True
        self._open[key] += 1
        self._guests_open += guest
        self._tenants_open += tenant
        self.nr_conns += 1
        conn = PvConn(self, key, self.cfg, sock, addr, listener.getsockname())
        self._read_head(conn, time.monotonic() + self.header_timeout)
        return True

    # A connecting pid's caller key, remembered briefly: a process opening
    # connections in a loop is identified (several /proc reads) once, not
    # at every connect. Only caps use it; requests are identified afresh.
    def _cheap_key(self, sock):
        pid = _peer_pid(sock)
        if pid is None:
            return _UNSEEN
        entry = self._pid_keys.get(pid)
        if entry is None or entry[1] < time.monotonic():
            return _UNSEEN
        return entry[0]

    def _remember_key(self, sock, key) -> None:
        pid = _peer_pid(sock)
        if pid is None:
            return
        if len(self._pid_keys) >= 4096:
            self._pid_keys.clear()
        self._pid_keys[pid] = (key, time.monotonic() + PID_KEY_TTL)

    def _shed(self, key) -> bool:
        """Whether ``key`` is over its connection rate (a token bucket of
        ``caller_connect_rate`` per second, as many in a burst)."""
        rate = self.caller_connect_rate
        if not rate:
            return False
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (rate, now))
        tokens = min(rate, tokens + (now - last) * rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            self._shed_count[key] = self._shed_count.get(key, 0) + 1
            return True
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > 4096:
            self._buckets.clear()
        return False

    def _report_shed(self) -> None:
        for key, count in self._shed_count.items():
            log.warning("caller_connections_shed", caller=str(key), shed=count)
        self._shed_count.clear()
        for key, count in self._refused.items():
            log.warning("caller_connection_refused", caller=str(key), refused=count, open=self._open.get(key, 0))
        self._refused.clear()

    def _forget(self, conn) -> None:
        """Count ``conn`` as closed for its caller (once)."""
        if not conn.pv_closed:
            conn.pv_closed = True
            if self.host_key is not None and conn.pv_key != self.host_key:
                self._guests_open -= 1
                self._tenants_open -= not privileged(conn.pv_key)
            self._open[conn.pv_key] -= 1
            if self._open[conn.pv_key] <= 0:
                self._open.pop(conn.pv_key, None)

    # -- reading the head in the poll loop -----------------------------------------

    def _read_head(self, conn, deadline: float, keep: bool = False) -> None:
        if not keep:
            conn.pv_buf = bytearray()
        conn.pv_eof = False
        conn.sock.setblocking(False)
        self._reading[conn] = deadline
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head_readable, conn))

    def _on_head_readable(self, conn, _sock) -> None:
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, conn.pv_buf = b"", bytearray()
        if data:
            conn.pv_buf += data
        else:
            conn.pv_eof = True
        if conn.pv_eof and not conn.pv_buf:
            self._drop(conn)
        elif request_ready(conn.pv_buf, conn.pv_eof):
            self._stop_reading(conn)
            if conn.parser is None:
                conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            data, conn.pv_buf = bytes(conn.pv_buf), bytearray()
            conn.parser.unreader.unread(data)
            conn.data_ready = True
            self.enqueue_req(conn)

    def _stop_reading(self, conn) -> None:
        self._reading.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _drop(self, conn) -> None:
        self._stop_reading(conn)
        self.nr_conns -= 1
        conn.close()

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection has bytes: read its next head here too.

        PERF: the whole request has usually arrived; it is read now and
        handed on, so the socket leaves the poller once, as in gthread.
        Only a request still incomplete waits for more (one ``modify``).
        """
        self.keepalived_conns.remove(conn)
        conn.pv_buf = bytearray()
        conn.pv_eof = False
        self._reading[conn] = time.monotonic() + self.header_timeout
        self._on_head_readable(conn, client)
        if conn in self._reading:
            self.poller.modify(client, selectors.EVENT_READ, partial(self._on_head_readable, conn))

    def murder_pending(self):
        super().murder_pending()
        now = time.monotonic()
        if now >= self._next_report:
            self._next_report = now + 1.0
            self._report_shed()
        for conn in [c for c, deadline in self._lingering.items() if deadline <= now or not self.alive]:
            self._end_linger(conn)
        # NOTE: a stopping worker does not wait for heads still coming.
        expired = [conn for conn, deadline in self._reading.items() if deadline <= now or not self.alive]
        for conn in expired:
            if self.alive:
                log.info("client_head_timeout", caller=str(conn.pv_key), received=len(conn.pv_buf))
            self._drop(conn)
        if not self.alive:
            self._cut_stragglers(now)
            # NOTE: nor for requests queued behind their caller's cap: served
            # one io_timeout after another, they would outlast gunicorn's
            # graceful_timeout, and a worker killed then stops no container.
            for key in list(self._waiting):
                for conn in self._waiting.pop(key):
                    self.nr_conns -= 1
                    conn.close()

    def _cut_stragglers(self, now: float) -> None:
        """Stopping: after ``STOP_GRACE`` s, end the requests still in threads.

        A peer trickling a large body keeps its thread for as long as it
        likes; gunicorn would wait ``graceful_timeout`` and then kill the
        worker, which then stops no container and runs no cleanup.
        """
        if self._stopping_since is None:
            self._stopping_since = now
        if now - self._stopping_since < STOP_GRACE:
            return
        for conn in list(self._in_thread):
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- per-caller thread caps -------------------------------------------------------

    def enqueue_req(self, conn):
        if conn.parser is not None and not conn.pv_buf:
            # NOTE: gunicorn hands over a pipelined next request as soon as a
            # byte of it was read ahead; the rest of its head is read here.
            ahead = conn.parser.unreader.buf.getvalue()
            if ahead and not request_ready(ahead, conn.pv_eof):
                conn.pv_buf = bytearray(conn.parser.unreader.take_buffered())
                self._read_head(conn, time.monotonic() + self.header_timeout, keep=True)
                return
        key = getattr(conn, "pv_key", None)
        if self._waiting.get(key) or not self._may_start(key):
            self._waiting[key].append(conn)  # behind its own earlier ones
            return
        self._start(conn, key)
