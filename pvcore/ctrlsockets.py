"""Each container's own pv-ctrl socket (docs/architecture.md, "Connections").

On a device every container reaches pv-ctrl at ``/pantavisor/pv-ctrl``. If
that were one socket for everyone, a container opening and closing
connections in a loop would keep its listen backlog full, and the host's
``curl`` would fail at connect: the kernel refuses before pvcore can tell
who is knocking. So a runtime asks for a socket of the container's own at
each start (:meth:`CallerSockets.open`), binds *that* one into the
container (or names it in ``PVCORE_CTRL_SOCKET``), and gives it back when
the start ends (:meth:`CallerSockets.close`). A flood then fills only the
flooder's own backlog, and the server stops listening to a listener whose
caller is over its connection rate (pvcore/connections.py) instead of
spending its loop on it.

A socket also says where a connection came from. It never grants an
identity — the peer is identified as always (pvcore/caller.py) — but it
restricts one: a peer that connects through container A's socket and is
identified as container B is unknown (``caller_identity_disputed``). The
host, reaching into a container's socket from outside, stays the host.

Without a server that serves extra listeners (an in-process test app),
:meth:`CallerSockets.open` answers the main socket's path.
"""
from __future__ import annotations

import hashlib
import os
import socket
import threading
from typing import Callable, Dict, Optional

import structlog

log = structlog.get_logger(__name__)

#: AF_UNIX paths stop at 107 bytes (and a NUL).
_MAX_PATH = 107
#: connections a container's socket queues before its own connects fail.
BACKLOG = 128

AddListener = Callable[[socket.socket, str], None]
RemoveListener = Callable[[socket.socket], None]


class CallerSockets:
    """The per-container listening sockets, and the server that accepts on them.

    :param directory: where the sockets are bound (``<run_dir>/ctrl``).
    :param main_path: the main pv-ctrl socket, answered when no server serves extra listeners.
    """

    def __init__(self, directory: str, main_path: str):
        self.directory = os.path.abspath(directory)
        self.main_path = os.path.abspath(main_path)
        self._lock = threading.Lock()
        self._by_name: Dict[str, socket.socket] = {}
        self._by_path: Dict[str, str] = {}  # bound path -> container name
        self._add: Optional[AddListener] = None
        self._remove: Optional[RemoveListener] = None

    def attach(self, add: AddListener, remove: RemoveListener) -> None:
        """Let a server accept on the sockets: ``add(sock, name)`` and ``remove(sock)``
        are called, from any thread, as sockets open and close. gunicorn's
        worker attaches in ``post_worker_init``, before the core starts."""
        with self._lock:
            self._add, self._remove = add, remove

    def sweep(self) -> None:
        """Remove the socket files a killed worker left (the core's start, under its lock)."""
        with self._lock:
            try:
                names = os.listdir(self.directory)
            except OSError:
                return
            for entry in names:
                path = os.path.join(self.directory, entry)
                if path not in self._by_path:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass

    def path_for(self, name: str) -> str:
        """Where container ``name``'s socket is bound (short enough for AF_UNIX)."""
        path = os.path.join(self.directory, name)
        if len(os.fsencode(path)) > _MAX_PATH - 1 or not _plain(name):
            path = os.path.join(self.directory, "c-" + hashlib.sha256(os.fsencode(name)).hexdigest()[:16])
        return path

    def open(self, name: str) -> str:
        """A new listening socket for container ``name``'s start; its path.

        A socket ``name`` still had is closed first (its backlog was the old
        start's). Without a server attached: the main socket's path.

        :raises OSError: the socket could not be bound.
        """
        with self._lock:
            if self._add is None:
                return self.main_path
            self._close_locked(name)
            path = self.path_for(name)
            if len(os.fsencode(path)) > _MAX_PATH - 1:  # the run dir itself is too deep
                log.warning("caller_socket_path_too_long", container=name, path=path)
                return self.main_path
            os.makedirs(self.directory, mode=0o755, exist_ok=True)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(path)
                # as the main socket: its owner and the service's group (gunicorn_conf's umask)
                os.chmod(path, 0o660)
                sock.listen(BACKLOG)
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            self._by_name[name] = sock
            self._by_path[path] = name
            add = self._add
        add(sock, name)
        log.debug("caller_socket_opened", container=name, path=path)
        return path

    def close(self, name: str) -> None:
        """Container ``name``'s start ended: its socket goes (connections already accepted stay)."""
        with self._lock:
            self._close_locked(name)

    def _close_locked(self, name: str) -> None:
        sock = self._by_name.pop(name, None)
        if sock is None:
            return
        for path, owner in list(self._by_path.items()):
            if owner == name:
                del self._by_path[path]
                try:
                    os.unlink(path)
                except OSError:
                    pass
        if self._remove is not None:
            self._remove(sock)  # the server closes it, in its own thread
        else:
            sock.close()

    def owner_of(self, sock) -> Optional[str]:
        """The container whose socket accepted connection ``sock``, or ``None`` (the main socket)."""
        try:
            local = sock.getsockname()
        except OSError:
            return None
        if isinstance(local, bytes):
            local = os.fsdecode(local)
        if not local:
            return None
        return self._by_path.get(local)

    def close_all(self) -> None:
        """Stopping: every socket goes, and the server is detached."""
        with self._lock:
            for name in list(self._by_name):
                self._close_locked(name)
            self._add = self._remove = None


def _plain(name: str) -> bool:
    return bool(name) and "/" not in name and "\0" not in name and name not in (".", "..")
