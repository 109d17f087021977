"""Who is calling: the peer pid of the socket, mapped to a container.

Upstream identifies callers by the peer's cgroup (contract §4.1); that
resolver lives here and runs last, so runtimes that know better (the process
runtime matches process trees) answer first through ``pvcore_identify_caller``.
"""
from __future__ import annotations

import itertools
import re
import socket
import struct
import weakref
from dataclasses import dataclass
from typing import Optional, Tuple

from pvcore import hookimpl

HOST = "_pv_"
_PEERCRED = struct.Struct("3i")
_V2_ROOT = re.compile(r"\d+::/(\.\.)?")


@dataclass(frozen=True)
class Caller:
    """The identified caller of a request (``req.context.caller``)."""

    name: str
    pid: int
    privileged: bool
    roles: Tuple[str, ...] = ()

    @property
    def is_host(self) -> bool:
        """Pantavisor itself or the host namespace, not a container."""
        return self.name == HOST


def peer_pid(environ) -> Optional[int]:
    """The pid of the process at the other end of the request's socket.

    Reads ``SO_PEERCRED`` from gunicorn's client socket; in-process test
    clients put the pid in ``environ['pvcore.peer_pid']`` instead (a client
    cannot set environ keys, only ``HTTP_*`` headers).
    """
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return environ.get("pvcore.peer_pid")
    if sock.family != socket.AF_UNIX:
        return None
    try:
        pid, _uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    except OSError:
        return None
    return pid if pid > 0 else None


def name_from_cgroup(text: str, fallback: str = HOST) -> Optional[str]:
    """Container name from the content of ``/proc/<pid>/cgroup`` (contract §4.1).

    :param fallback: the name for a process outside any container cgroup
        (``_pv_``: on a laptop demo device every host process is "Pantavisor");
        empty makes such callers unknown, as upstream does.
    """
    lines = text.splitlines()
    for line in lines:
        if ":name=pantavisor:/" in line:
            rest = line.split(":name=pantavisor:/", 1)[1]
            if rest.startswith("lxc/"):
                rest = rest[4:]
            # NOTE: upstream treats any prefix of "_pv_" (even "") as the host
            # (contract §12.13); only the exact root is the host here.
            return rest or HOST
    for line in lines:
        if "/lxc/" in line:
            return line.split("/lxc/", 1)[1] or None
    for line in lines:
        if _V2_ROOT.fullmatch(line):
            return HOST
    return fallback or None


@hookimpl(trylast=True)
def pvcore_identify_caller(core, pid):
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            text = fh.read()
    except OSError:
        return None
    return name_from_cgroup(text, core.settings.caller_fallback)


class CallerCache:
    """Callers remembered per client connection.

    PERF: identifying a caller reads several ``/proc`` files; a keep-alive
    connection keeps its peer process, so the answer holds until the device
    changes (a container status or the revision), which bumps the generation.
    """

    def __init__(self):
        self._by_socket = weakref.WeakKeyDictionary()
        self._generation = itertools.count()
        self.generation = next(self._generation)

    def get(self, sock) -> Optional[Caller]:
        entry = self._by_socket.get(sock)
        if entry is not None and entry[0] == self.generation:
            return entry[1]
        return None

    def put(self, sock, caller: Caller) -> None:
        self._by_socket[sock] = (self.generation, caller)

    def invalidate(self) -> None:
        self.generation = next(self._generation)


@hookimpl
def pvcore_container_status_changed(core):
    core.caller_cache.invalidate()


@hookimpl
def pvcore_revision_changed(core):
    core.caller_cache.invalidate()


def identify(core, environ) -> Optional[Caller]:
    """The :class:`Caller` of a request, or ``None`` when it cannot be identified."""
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        cache = core.caller_cache
        caller = cache.get(sock)
        if caller is None:
            caller = _identify(core, environ)
            if caller is not None:
                cache.put(sock, caller)
        return caller
    return _identify(core, environ)


def _identify(core, environ) -> Optional[Caller]:
    pid = peer_pid(environ)
    if pid is None:
        return None
    name = core.hook.pvcore_identify_caller(core=core, pid=pid)
    if name is None:
        return None
    if name == HOST:
        return Caller(HOST, pid, True, ("mgmt",))
    roles = core.hook.pvcore_caller_roles(core=core, name=name)
    if roles is None:
        return None
    roles = tuple(roles)
    return Caller(name, pid, "mgmt" in roles, roles)
