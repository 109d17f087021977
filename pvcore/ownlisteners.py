"""The worker's other listeners, each container's own socket (pvcore/ctrlsockets.py), and pauses.

gunicorn's master binds the main socket before the worker starts; a
container's socket is made by the worker itself, at that container's start,
from whichever thread starts it. :class:`OwnListeners` accepts on those
beside the main one (docs/architecture.md, "Connections"): registered and
closed in the poll loop, and left unpolled for :data:`LISTENER_PAUSE`
seconds when their caller is over its connection rate, so that a flood
waits in the flooder's own backlog instead of costing the loop. Any
listener, the main one too, is paused likewise when ``accept`` finds the
worker out of file descriptors.
"""
from __future__ import annotations

import selectors
import socket
import threading
import time
from typing import Dict, Hashable

from gunicorn.workers.gthread import PollableMethodQueue

#: Seconds a container's own listener is left alone once its caller is over
#: its connection rate: meanwhile its connects fill its own backlog, not the loop.
LISTENER_PAUSE = 0.1
#: "no key known yet" for a connection's caller (pvcore/connections.py).
UNSEEN = object()


class GuardedMethodQueue(PollableMethodQueue):
    """gthread's queue of calls for the poll loop, safe to use once the loop has ended.

    Plugins close their containers' sockets from any thread, also after the
    loop closed the queue's pipe (a worker stopping its containers in
    ``worker_exit``); writing the wake-up byte then could land in whatever
    file reused the descriptor.
    """

    def __init__(self):
        super().__init__()
        # NOTE: reentrant: gthread's SIGTERM handler defers a wake-up from the main
        # thread, which may be inside defer() already (a future done at submit).
        self._guard = threading.RLock()
        self.closed = False

    def defer(self, callback, *args) -> bool:
        """Queue ``callback(*args)`` for the loop; ``False`` once the loop has ended."""
        with self._guard:
            if self.closed:
                return False
            super().defer(callback, *args)
            return True

    def close(self):
        with self._guard:
            self.closed = True
            super().close()


class OwnListeners:
    """Listeners added and removed while a gthread worker runs (``self.poller``).

    The worker's ``accept`` calls :meth:`_pause` on a listener whose caller
    it sheds.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.method_queue = GuardedMethodQueue()
        self._own_listeners: Dict[socket.socket, Hashable] = {}  # a container's socket -> its caller key
        self._paused: Dict[socket.socket, float] = {}  # such a listener -> when it is polled again

    def add_listener(self, sock: socket.socket, key: Hashable) -> None:
        """Accept on ``sock`` too, counting its connections as caller ``key``'s (any thread)."""
        if not self.method_queue.defer(self._add_listener, sock, key):
            sock.close()

    def remove_listener(self, sock: socket.socket) -> None:
        """Stop accepting on ``sock`` and close it (any thread)."""
        if not self.method_queue.defer(self._remove_listener, sock):
            sock.close()

    def _add_listener(self, sock, key) -> None:
        if sock.fileno() < 0:  # closed meanwhile
            return
        self._own_listeners[sock] = key
        if self._accepting:
            self.poller.register(sock, selectors.EVENT_READ, self.accept)

    def _remove_listener(self, sock) -> None:
        if self._own_listeners.pop(sock, None) is not None and self._paused.pop(sock, None) is None \
                and self._accepting:
            self.poller.unregister(sock)
        sock.close()

    def _pause(self, listener) -> None:
        """Leave ``listener`` (a container's, or the main one) unpolled for :data:`LISTENER_PAUSE` s."""
        if listener in self._paused:
            return
        self._paused[listener] = time.monotonic() + LISTENER_PAUSE
        if self._accepting:
            self.poller.unregister(listener)

    def set_accept_enabled(self, enabled):
        # gthread's own, over every listener but the paused ones
        if enabled == self._accepting:
            return
        for sock in [*self.sockets, *self._own_listeners]:
            if sock in self._paused:
                continue
            if enabled:
                sock.setblocking(False)
                self.poller.register(sock, selectors.EVENT_READ, self.accept)
            else:
                self.poller.unregister(sock)
        self._accepting = enabled

    def wait_for_and_dispatch_events(self, timeout):
        if self._paused:
            now = time.monotonic()
            for sock, until in list(self._paused.items()):
                if until <= now:
                    del self._paused[sock]
                    if self._accepting:
                        self.poller.register(sock, selectors.EVENT_READ, self.accept)
            if self._paused:
                timeout = min(timeout, max(0.0, min(self._paused.values()) - now))
        super().wait_for_and_dispatch_events(timeout)
