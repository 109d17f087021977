"""What pvcore can observe of a peer process that the process cannot change.

Two facts identify a caller (docs/architecture.md §6, "Callers"):

* its cgroups, one per mounted hierarchy (``/proc/<pid>/cgroup``). A process
  cannot leave its cgroup by forking, but a root tenant that can reach a
  cgroupfs can write its pid into another cgroup, one hierarchy at a time;
* its pid namespace, and that namespace's ancestors. No process can ever
  leave its pid namespace (``setns``/``unshare`` only affect children, and
  only ever downwards), so a process in a container's pid namespace, or in
  one created below it, is that container's for good.

:func:`observe` reads both at once; the caller resolver
(:mod:`pvcore.caller`) asks every fact to agree.
"""
from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from pvcore.cgroups import parse_membership

#: ``ioctl(ns_fd, NS_GET_PARENT)``: the parent of a pid namespace (linux/nsfs.h, ``_IO(0xb7, 0x2)``).
NS_GET_PARENT = 0xB702
#: The kernel nests pid namespaces at most 32 deep.
_MAX_NS_DEPTH = 33

NamespaceId = Tuple[int, int]  # (st_dev, st_ino) of the nsfs inode


def _ns_id(st: os.stat_result) -> NamespaceId:
    return (st.st_dev, st.st_ino)


def own_pid_namespace() -> NamespaceId:
    """pvcore's own pid namespace: the host's, as far as pvcore can tell."""
    return _ns_id(os.stat("/proc/self/ns/pid"))


def pid_namespace(pid: int) -> Optional[NamespaceId]:
    """The pid namespace of process ``pid``, or ``None`` when it cannot be read (gone, no permission)."""
    try:
        return _ns_id(os.stat(f"/proc/{pid}/ns/pid"))
    except OSError:
        return None


def pid_namespaces(pid: int) -> Optional[Tuple[NamespaceId, ...]]:
    """The pid namespace of ``pid`` and its ancestors, innermost first.

    The walk stops at pvcore's own namespace (then the last entry) or where
    the kernel refuses to go further up (a namespace outside pvcore's: the
    tuple then does not end with :func:`own_pid_namespace`). ``None`` when
    the process cannot be read.
    """
    try:
        fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    own = own_pid_namespace()
    chain: List[NamespaceId] = []
    try:
        for _ in range(_MAX_NS_DEPTH):
            chain.append(_ns_id(os.fstat(fd)))
            if chain[-1] == own:
                break
            try:
                parent = fcntl.ioctl(fd, NS_GET_PARENT)
            except OSError:  # EPERM: the parent is not below pvcore's namespace
                break
            os.close(fd)
            fd = parent
    finally:
        os.close(fd)
    return tuple(chain)


@dataclass(frozen=True)
class Observation:
    """A peer process as pvcore sees it (see the module docstring).

    :ivar membership: ``[(controllers, path)]`` of ``/proc/<pid>/cgroup``.
    :ivar namespaces: its pid namespace and their ancestors up to pvcore's
        (:func:`pid_namespaces`), or ``None`` when they could not be read.
    """

    pid: int
    membership: List[Tuple[str, str]]
    namespaces: Optional[Tuple[NamespaceId, ...]]

    @property
    def in_own_pid_namespace(self) -> bool:
        """Whether the peer shares pvcore's pid namespace (it may then be the host)."""
        return bool(self.namespaces) and self.namespaces[0] == own_pid_namespace()

    def below(self, namespace: NamespaceId) -> bool:
        """Whether the peer is in pid namespace ``namespace`` or one created below it."""
        return bool(self.namespaces) and namespace in self.namespaces

    def evidence(self) -> dict:
        """Log fields: what was observed."""
        return {"pid": self.pid, "cgroups": [f"{c}:{p}" for c, p in self.membership],
                "pid_namespaces": [ino for _dev, ino in self.namespaces] if self.namespaces else None}


def observe(pid: int) -> Optional[Observation]:
    """Observe process ``pid``; ``None`` when it is gone."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            membership = parse_membership(fh.read())
    except OSError:
        return None
    return Observation(pid, membership, pid_namespaces(pid))
