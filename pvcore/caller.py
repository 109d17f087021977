"""Who is calling: the peer pid of the socket, mapped to a container.

Callers are identified by the peer's cgroup, as upstream does
(docs/protocol.md, "Callers"). The core's resolver runs last, so runtimes
that know better (the process runtime matches process trees) answer first
through ``pvcore_identify_caller``. In order, the core's resolver takes:

1. the cgroups running callers report (``pvcore_caller_cgroups``): a
   process cannot leave its cgroup, whatever it forks;
2. a cgroup of pvcore's own container tree no running container claims, or
   a process carrying a contained child's environment tag: unknown;
3. upstream's cgroup names (``name=pantavisor``, ``/lxc/<name>``);
4. the host, only when recognised positively: an effective uid of
   ``caller_host_uids``, a cgroup of ``caller_host_cgroups``, or a process
   of pvcore's own tree (master, worker, daemons);
5. anyone else is unknown, and gets the contract's 500 — never mgmt.
"""
from __future__ import annotations

import itertools
import os
import socket
import struct
import weakref
from dataclasses import dataclass
from typing import FrozenSet, Iterable, List, Optional, Tuple

from pvcore import hookimpl
from pvcore.cgroups import CgroupRef, parse_membership
from pvcore.ownership import Owns
from pvcore.supervisor import CONTAINED_VARIABLE, environ_names, proc_stat

HOST = "_pv_"
_PEERCRED = struct.Struct("3i")
#: how far up a peer's ancestry we look for pvcore's own processes.
_MAX_DEPTH = 64


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


def name_from_cgroup(text: str) -> Optional[str]:
    """Upstream's container name from the content of ``/proc/<pid>/cgroup``.

    ``name=pantavisor:/lxc/<name>`` (its root is Pantavisor itself,
    ``_pv_``), else the first ``.../lxc/<name>``; ``None`` when neither
    matches (docs/protocol.md, "Callers").
    """
    lines = text.splitlines()
    for line in lines:
        if ":name=pantavisor:/" in line:
            rest = line.split(":name=pantavisor:/", 1)[1]
            if rest.startswith("lxc/"):
                rest = rest[4:]
            # NOTE: upstream treats any prefix of "_pv_" (even "") as the host;
            # only the exact root is the host here (docs/protocol.md).
            return rest or HOST
    for line in lines:
        if "/lxc/" in line:
            return line.split("/lxc/", 1)[1] or None
    return None


def host_uids(value: str) -> FrozenSet[int]:
    """``caller_host_uids``: comma-separated uids, ``self`` for pvcore's own euid."""
    uids = set()
    for part in value.split(","):
        part = part.strip()
        if part == "self":
            uids.add(os.geteuid())
        elif part:
            uids.add(int(part))
    return frozenset(uids)


def host_cgroups(value: str) -> List[str]:
    """``caller_host_cgroups``: comma-separated cgroup paths (any hierarchy)."""
    return [part.strip() for part in value.split(",") if part.strip()]


def _effective_uid(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("Uid:"):
                    return int(line.split()[2])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _start_time(pid: int) -> Optional[str]:
    """When ``pid`` started (clock ticks since boot), or ``None`` if it is gone."""
    stat = proc_stat(pid)
    return stat[19] if stat is not None and len(stat) > 19 else None


def _in_own_tree(pid: int) -> bool:
    """Whether ``pid`` is pvcore's master, its worker, or a descendant of them."""
    own = {os.getpid(), os.getppid()}
    current = pid
    for _ in range(_MAX_DEPTH):
        if current in own:
            return True
        if current <= 1:
            return False
        stat = proc_stat(current)
        if stat is None:
            return False
        current = int(stat[1])
    return False


def _reported_cgroups(core) -> Iterable[Tuple[str, CgroupRef]]:
    for reported in core.hook.pvcore_caller_cgroups(core=core):
        for name, refs in (reported or {}).items():
            for ref in refs:
                yield name, ref if isinstance(ref, CgroupRef) else CgroupRef.parse(ref)


def is_host(core, pid: int, membership: List[Tuple[str, str]]) -> bool:
    """Positive recognition of the host (step 4 of the module docstring)."""
    uids = core.settings.get("caller_host_uids")
    if uids and _effective_uid(pid) in host_uids(uids):
        return True
    wanted = host_cgroups(core.settings.get("caller_host_cgroups"))
    if wanted and any(path in wanted for _controllers, path in membership):
        return True
    return _in_own_tree(pid)


@hookimpl(trylast=True)
def pvcore_identify_caller(core, pid):
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            text = fh.read()
    except OSError:
        return None
    membership = parse_membership(text)
    for name, ref in _reported_cgroups(core):
        if ref.holds(membership):
            return name
    tree = core.supervisor.cgroups
    if tree is not None and tree.owns(membership):
        return ""  # a container cgroup of ours that no running container claims
    name = name_from_cgroup(text)
    if name is not None:
        return name
    # NOTE: the tag only ever denies: a process can forge its environment
    # (so the tag never names a caller) but not to pass for the host.
    if environ_names(pid, CONTAINED_VARIABLE):
        return ""
    return HOST if is_host(core, pid, membership) else ""


class CallerCache:
    """Callers remembered per client connection.

    PERF: identifying a caller reads several ``/proc`` files; a keep-alive
    connection keeps its peer process, so the answer holds until the device
    changes (a container status or the revision), which bumps the generation.

    The peer process is pinned too: ``SO_PEERCRED`` names the pid that
    connected, and once that process is gone its pid may be reused by
    another (the host). A connection outlives its process when handed on
    (fork, ``SCM_RIGHTS``), so re-identifying it by pid alone would give a
    container's connection the new owner's identity; instead it becomes
    unknown (docs/protocol.md §4.1).
    """

    def __init__(self):
        self._by_socket = weakref.WeakKeyDictionary()
        self._peers = weakref.WeakKeyDictionary()  # sock -> (pid, start time) first seen
        self._generation = itertools.count()
        self.generation = next(self._generation)

    def get(self, sock) -> Optional[Caller]:
        entry = self._by_socket.get(sock)
        if entry is not None and entry[0] == self.generation:
            return entry[1]
        return None

    def put(self, sock, caller: Caller) -> None:
        self._by_socket[sock] = (self.generation, caller)

    def same_peer(self, sock, pid: int) -> bool:
        """Whether ``pid`` is still the process first seen on ``sock``."""
        current = (pid, _start_time(pid))
        try:
            first = self._peers.setdefault(sock, current)
        except TypeError:  # a socket that cannot be weakly referenced: nothing to pin
            return True
        return current[1] is not None and first == current

    def invalidate(self) -> None:
        self.generation = next(self._generation)


@hookimpl
def pvcore_declare_ownership():
    # Who a pid is, and what it may do, change with the events plugins
    # declared as ``caller_events`` (a container's status, the revision).
    return Owns(listens=lambda registry: sorted(registry.caller_events))


@hookimpl
def pvcore_event(core, event):
    core.caller_cache.invalidate()


def connection_key(core, sock) -> Optional[str]:
    """Who holds connection ``sock``, for per-caller caps (pvcore/connections.py).

    The caller's name (a container, ``_pv_``), or ``None`` for every caller
    that cannot be identified (they share their caps).
    """
    caller = identify(core, {"gunicorn.socket": sock})
    return caller.name if caller is not None else None


def identify(core, environ) -> Optional[Caller]:
    """The :class:`Caller` of a request, or ``None`` when it cannot be identified."""
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        cache = core.caller_cache
        caller = cache.get(sock)
        if caller is None:
            pid = peer_pid(environ)
            if pid is None or not cache.same_peer(sock, pid):
                return None
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
    if not name:
        return None
    if name == HOST:
        return Caller(HOST, pid, True, ("mgmt",))
    roles = core.hook.pvcore_caller_roles(core=core, name=name)
    if roles is None:
        return None
    roles = tuple(roles)
    return Caller(name, pid, "mgmt" in roles, roles)
