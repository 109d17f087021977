"""Who is calling: the peer pid of the socket, mapped to a container.

Callers are identified by what pvcore observes of the peer process
(:mod:`pvcore.peer`): its cgroups and its pid namespace, as upstream does
with cgroups (docs/protocol.md §4.1, docs/architecture.md §6). The core's
resolver runs last, so runtimes that know better (the process runtime
matches process trees) answer first through ``pvcore_identify_caller``. In
order, the core's resolver takes:

1. the running callers' cgroups (``pvcore_caller_cgroups``) and pid
   namespaces (``pvcore_caller_leaders``): a caller is named only when
   *every* cgroup reported for it holds the peer, the peer is in (or below)
   its pid namespace when it has one of its own, and nothing points at
   another caller;
2. a cgroup of pvcore's own container tree no running container claims, or
   a process carrying a contained child's environment tag: unknown;
3. upstream's cgroup names (``name=pantavisor``, ``/lxc/<name>``), when
   every line naming one agrees;
4. the host, only when recognised positively and in pvcore's own pid
   namespace: an effective uid of ``caller_host_uids``, a cgroup of
   ``caller_host_cgroups``, or a process of pvcore's own tree (master,
   worker, daemons);
5. anyone else is unknown, and gets the contract's 500 — never mgmt.

Whichever resolver answered, :func:`confirm` then checks the answer against
the same observation: evidence for another caller, a missing piece of the
named caller's, or a "host" outside pvcore's pid namespace turns it into an
unknown caller, logged as ``caller_identity_disputed`` with the evidence.
"""
from __future__ import annotations

import itertools
import os
import signal
import socket
import struct
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

import structlog

from pvcore import hookimpl
from pvcore.cgroups import CgroupRef
from pvcore.ownership import Owns
from pvcore.peer import Observation, observe, own_pid_namespace, pid_namespace, pid_namespaces
from pvcore.shares import PrivilegedKey
from pvcore.supervisor import CONTAINED_VARIABLE, environ_names, proc_stat

log = structlog.get_logger(__name__)

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
            name = rest or HOST
            break
    else:
        names = {line.split("/lxc/", 1)[1] for line in lines if "/lxc/" in line}
        # a tenant can move itself in one hierarchy: every line must agree
        return names.pop() or None if len(names) == 1 else None
    # name=pantavisor wins, but no other line may name another container
    others = {line.split("/lxc/", 1)[1] for line in lines if "/lxc/" in line and ":name=pantavisor:" not in line}
    return name if not others - {name} else None


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


@dataclass
class Testimony:
    """What an observation says about the running callers (step 1 of the module docstring).

    :ivar holds: caller → the evidence that the peer is that caller
        (its cgroups that hold the peer, its pid namespace).
    :ivar lacks: caller → the evidence of it that does not hold the peer.
    """

    holds: Dict[str, List[str]] = field(default_factory=dict)
    lacks: Dict[str, List[str]] = field(default_factory=dict)

    def full(self, name: str) -> bool:
        """Whether everything known of ``name`` holds the peer, and nothing of another caller does."""
        return name in self.holds and not self.lacks.get(name) and set(self.holds) == {name}


def testimony(core, seen: Observation) -> Testimony:
    """Confront observation ``seen`` with every running caller's cgroups and pid namespace."""
    result = Testimony()

    def note(name, holds, what):
        (result.holds if holds else result.lacks).setdefault(name, []).append(what)

    for name, ref in _reported_cgroups(core):
        note(name, ref.holds(seen.membership), str(ref))
    own = own_pid_namespace()
    for leaders in core.hook.pvcore_caller_leaders(core=core):
        for name, leader in (leaders or {}).items():
            namespace = pid_namespace(leader)
            if namespace is not None and namespace != own:
                note(name, seen.below(namespace), f"pid namespace of {leader}")
    return result


#: Disputes already logged, by pid (a hostile caller reconnecting must not flood the log).
_DISPUTED: "OrderedDict[Tuple[int, str], None]" = OrderedDict()
_DISPUTED_MAX = 256


def _dispute(seen: Observation, named: str, facts: Testimony, why: str) -> str:
    key = (seen.pid, named)
    if key not in _DISPUTED:
        _DISPUTED[key] = None
        while len(_DISPUTED) > _DISPUTED_MAX:
            try:
                _DISPUTED.popitem(last=False)
            except KeyError:  # another thread emptied it first
                break
        log.warning("caller_identity_disputed", named=named, why=why, holds=facts.holds, lacks=facts.lacks,
                    **seen.evidence())
    return ""


def confirm(core, pid: int, name: str) -> str:
    """``name`` if everything observed of ``pid`` agrees with it, else ``""`` (unknown, logged).

    ``name`` is what a resolver answered (``_pv_`` or a caller name). The
    host must be in pvcore's pid namespace and in no caller's cgroup or
    namespace; a caller must have all its evidence and nobody else's
    (docs/architecture.md §6).
    """
    seen = observe(pid)
    if seen is None:
        return ""  # gone: nothing it could be
    facts = testimony(core, seen)
    if name == HOST:
        if not seen.in_own_pid_namespace:
            return _dispute(seen, name, facts, "not in pvcore's pid namespace")
        if facts.holds:
            return _dispute(seen, name, facts, "evidence of a caller")
        return name
    if facts.holds and not facts.full(name):
        return _dispute(seen, name, facts, "evidence disagrees")
    if facts.lacks.get(name):
        return _dispute(seen, name, facts, "evidence of the caller missing")
    return name


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
    seen = observe(pid)
    if seen is None:
        return None
    membership = seen.membership
    facts = testimony(core, seen)
    if facts.holds:
        name = next(iter(facts.holds))
        return name if facts.full(name) else _dispute(seen, name, facts, "evidence disagrees")
    tree = core.supervisor.cgroups
    if tree is not None and tree.owns(membership):
        return ""  # a container cgroup of ours that no running container claims
    name = name_from_cgroup(text)
    if name is not None:
        return "" if name == HOST and not seen.in_own_pid_namespace else name
    # NOTE: the tag only ever denies: a process can forge its environment
    # (so the tag never names a caller) but not to pass for the host.
    if environ_names(pid, CONTAINED_VARIABLE):
        return ""
    return HOST if seen.in_own_pid_namespace and is_host(core, pid, membership) else ""


class CallerCache:
    """Callers remembered per client connection.

    PERF: identifying a caller reads several ``/proc`` files; a keep-alive
    connection keeps its peer process, so the answer holds until the device
    changes (a container status or the revision), which bumps the generation,
    or its peer process exits (one ``pidfd`` check per request).

    The peer process is pinned too: ``SO_PEERCRED`` names the pid that
    connected, and once that process is gone its pid may be reused by
    another (the host). A connection outlives its process when handed on
    (fork, ``SCM_RIGHTS``), so re-identifying it by pid alone would give a
    container's connection the new owner's identity; instead it becomes
    unknown (docs/protocol.md §4.1).
    """

    def __init__(self):
        self._by_socket = weakref.WeakKeyDictionary()
        self._peers = weakref.WeakKeyDictionary()  # sock -> (pid, start time, pidfd) first seen
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
        try:
            first = self._peers.get(sock)
        except TypeError:  # a socket that cannot be weakly referenced: nothing to pin
            return True
        if first is None:
            first = self._peers[sock] = _pin_peer(sock, pid)
        if first[0] != pid:
            return False
        if first[2] is not None:
            # PERF: the peer's pidfd says whether that very process still
            # exists in one syscall; a /proc/<pid>/stat read was a third of
            # the framework's cost of a request.
            try:
                signal.pidfd_send_signal(first[2], 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                pass
            return True
        return first[1] is not None and _start_time(pid) == first[1]

    def invalidate(self) -> None:
        self.generation = next(self._generation)


#: ``SO_PEERPIDFD`` (Linux ≥ 6.5; Python ≥ 3.13 names it).
_SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)


def _pin_peer(sock, pid: int) -> tuple:
    """``(pid, start time, pidfd)`` of the process that connected ``sock``.

    The pidfd is the kernel's own handle on the peer (``SO_PEERPIDFD``),
    closed with the socket; without one (an older kernel), the start time
    tells a reused pid apart, at a ``/proc`` read per request.
    """
    pidfd = None
    if hasattr(signal, "pidfd_send_signal"):
        try:
            pidfd = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERPIDFD)
        except OSError:
            pidfd = None
        else:
            weakref.finalize(sock, os.close, pidfd)
    return (pid, _start_time(pid) if pidfd is None else None, pidfd)


@hookimpl
def pvcore_declare_ownership():
    # Who a pid is, and what it may do, change with the events plugins
    # declared as ``caller_events`` (a container's status, the revision).
    return Owns(listens=lambda registry: sorted(registry.caller_events))


@hookimpl
def pvcore_event(core, event):
    core.caller_cache.invalidate()


def connection_key(core, sock):
    """Who holds connection ``sock``, for per-caller caps (pvcore/connections.py).

    The caller's name (a container, ``_pv_``). Callers that cannot be
    identified do not share one set of caps anyone could fill: they are
    told apart by what they cannot multiply cheaply (:func:`unknown_key`).
    A connection through a container's own socket (pvcore/ctrlsockets.py)
    counts as that container's, whoever the peer turns out to be.
    """
    via = core.sockets.owner_of(sock)
    if via is not None:
        return container_key(core, via)
    caller = identify(core, {"gunicorn.socket": sock})
    if caller is not None:  # its roles are known already: no second lookup
        return PrivilegedKey(caller.name) if caller.privileged and not caller.is_host else caller.name
    try:
        pid, uid, _gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    except OSError:
        return ("unknown",)
    return unknown_key(pid, uid)


def container_key(core, name: str) -> str:
    """Caps key of container ``name``: a mgmt container's has a share of
    threads and connections no tenant can take (pvcore/shares.py)."""
    if name == HOST:
        return name
    roles = core.hook.pvcore_caller_roles(core=core, name=name)
    return PrivilegedKey(name) if roles is not None and "mgmt" in roles else name


def unknown_key(pid: int, uid: int) -> tuple:
    """The caps bucket of an unknown caller ``pid`` (effective ``uid``).

    In a pid namespace below pvcore's: the outermost one under pvcore's —
    a container's own, which none of its processes can leave, however many
    namespaces they create inside it. In pvcore's own namespace: its uid,
    which an unprivileged process cannot change.
    """
    chain = pid_namespaces(pid)
    if chain and chain[0] != own_pid_namespace():
        top = chain[-2] if chain[-1] == own_pid_namespace() else chain[-1]
        return ("unknown", "pidns", top[1])
    return ("unknown", "uid", uid)


def identify(core, environ) -> Optional[Caller]:
    """The :class:`Caller` of a request, or ``None`` when it cannot be identified."""
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        cache = core.caller_cache
        caller = cache.get(sock)
        # NOTE: the answer is the connecting process's: once it has exited
        # (the connection handed on), the connection is unknown (§4.1).
        if caller is not None and not cache.same_peer(sock, caller.pid):
            return None
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
    sock = environ.get("gunicorn.socket")
    if name and sock is not None:
        # NOTE: in-process test clients name pretend pids (environ["pvcore.peer_pid"]);
        # every real peer arrives through a socket and is confirmed.
        name = confirm(core, pid, name)
        via = core.sockets.owner_of(sock)
        if name and via is not None and name not in (via, HOST):
            # a container's socket restricts who may call through it (pvcore/ctrlsockets.py)
            log.warning("caller_identity_disputed", pid=pid, named=name, socket_of=via,
                        why="connected through another container's socket")
            name = ""
    if not name:
        return None
    if name == HOST:
        return Caller(HOST, pid, True, ("mgmt",))
    roles = core.hook.pvcore_caller_roles(core=core, name=name)
    if roles is None:
        return None
    roles = tuple(roles)
    return Caller(name, pid, "mgmt" in roles, roles)
