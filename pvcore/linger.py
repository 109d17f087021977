"""Closing a connection without cutting off a client that is still sending.

A connection closed with unread bytes is reset: a client still writing its
request body (one answered early, like the 507 of an upload over the free
space) dies of ``SIGPIPE`` before it reads the answer. So a close that
follows an answer half-closes, discards what the peer still sends, and
only then closes (RFC 9112 §9.6). gunicorn's ``close_graceful`` does the
same but blocks its loop meanwhile; :class:`LingeringClose` does it in the
poll loop of :class:`pvcore.connections.FairThreadWorker`, holding no thread
(docs/architecture.md, "Connections").
"""
from __future__ import annotations

import selectors
import socket
import time
from functools import partial
from typing import Dict

#: A closing connection is drained until its peer pauses this long (gunicorn's
#: own limit, here renewed by every read)...
LINGER = 2.0
#: ... and this long at most in all, however steadily the peer sends.
LINGER_MAX = 30.0
#: The poll loop's one buffer for bytes it discards (it is single-threaded).
_DISCARD = bytearray(256 * 1024)


class LingeringClose:
    """The poll loop's graceful close, for a gthread worker (``self.poller``).

    The worker's ``murder_pending`` ends the drains whose deadline in
    ``_lingering`` has passed (:meth:`_end_linger`).
    """

    #: bytes a closing connection may still discard (see :meth:`linger_budget`).
    linger_bytes = 64 * 1024

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lingering: Dict[object, float] = {}  # conn -> when to stop draining it

    def linger_budget(self, conn) -> int:
        """Bytes a closing ``conn`` may still discard: ``linger_bytes``.
        (:class:`pvcore.worker.PvThreadWorker` allows the rest of a body the
        client declared, so that it can send it all and then read the answer.)"""
        return self.linger_bytes

    def _linger(self, conn) -> None:
        """Half-close, then drain what the peer still sends, in the poll loop
        (RFC 9112 §9.6), then close: gunicorn's ``close_graceful`` does the
        same but blocks the loop meanwhile.

        Closing with unread bytes would reset the connection, and a client
        still writing its body would die of ``SIGPIPE`` before reading the
        answer. The drain ends at :meth:`linger_budget` bytes, when the peer
        closes or pauses for ``LINGER`` seconds, and after ``LINGER_MAX``
        seconds in all; it holds no thread, and the connection still counts
        against its caller's cap.
        """
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_linger_readable, conn))
        except (OSError, ValueError, KeyError):
            conn.close()
            return
        now = time.monotonic()
        conn.pv_drain_left = self.linger_budget(conn)
        conn.pv_drain_end = now + LINGER_MAX
        self._lingering[conn] = now + LINGER

    def _on_linger_readable(self, conn, _sock) -> None:
        try:
            size = conn.sock.recv_into(_DISCARD, min(len(_DISCARD), max(conn.pv_drain_left, 1)))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            size = 0
        conn.pv_drain_left -= size
        if not size or conn.pv_drain_left <= 0:
            self._end_linger(conn)
        else:
            self._lingering[conn] = min(time.monotonic() + LINGER, conn.pv_drain_end)

    def _end_linger(self, conn) -> None:
        self._lingering.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        conn.close()
