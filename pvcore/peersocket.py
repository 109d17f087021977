"""A client socket whose blocking operations give up on a stalled peer (docs/architecture.md, "Connections")."""
from __future__ import annotations

import errno
import socket
import time
from typing import Optional

import structlog

log = structlog.get_logger(__name__)


class PeerSocket(socket.socket):
    """A client socket whose blocking operations give up on a stalled peer.

    gunicorn puts the socket in blocking mode (``setblocking(True)``) when a
    thread takes it; here that means "block, but at most ``io_timeout``
    seconds without progress". A peer that stalls longer looks like one that
    reset the connection (``ECONNRESET``), which gunicorn and pvcore's body
    readers already handle quietly.
    """

    __slots__ = ("io_timeout", "deadline")

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(self.io_timeout)
        else:
            super().setblocking(False)

    def _before_recv(self) -> None:
        # ``deadline`` (monotonic, set by pvcore.body.body_deadline): what is
        # being read must have arrived by then, however it trickles.
        if self.deadline is not None and self.gettimeout() != 0.0:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise _stalled("sending in time")
            self.settimeout(min(self.io_timeout, remaining))

    def recv(self, *args):
        self._before_recv()
        try:
            return super().recv(*args)
        except socket.timeout:
            raise _stalled("sending") from None

    def recv_into(self, *args):
        self._before_recv()
        try:
            return super().recv_into(*args)
        except socket.timeout:
            raise _stalled("sending") from None

    def sendall(self, data, flags: int = 0) -> None:
        # NOTE: socket.sendall's timeout bounds the whole call; a slow reader
        # that keeps reading must not be cut, so each send gets its own.
        if self.gettimeout() == 0.0:
            return super().sendall(data, flags)
        view = memoryview(data).cast("B")
        try:
            while view:
                sent = self.send(view, flags)
                view = view[sent:]
        except socket.timeout:
            raise _stalled("reading") from None
        return None

    def sendfile(self, file, offset: int = 0, count: Optional[int] = None):
        try:
            return super().sendfile(file, offset, count)
        except socket.timeout:
            raise _stalled("reading") from None


def _stalled(what: str) -> ConnectionResetError:
    log.info("client_stalled", stopped=what)
    return ConnectionResetError(errno.ECONNRESET, f"peer stopped {what}")
