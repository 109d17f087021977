"""Cgroups pvcore owns: one per supervised container, under a parent of its own.

A process cannot leave its cgroup by forking, ``setsid()`` or re-parenting
to init, so a cgroup is what identifies a container's processes and what
ends all of them (docs/architecture.md, "Callers"). :class:`CgroupTree` picks
the hierarchy the machine mounts:

* cgroup v2 (``/sys/fs/cgroup`` itself, or ``/sys/fs/cgroup/unified`` on a
  hybrid machine): ``cgroup.kill`` ends a cgroup at once; kernels without it
  freeze the cgroup (``cgroup.freeze``) so nothing forks while every pid is
  killed.
* cgroup v1 only: the ``freezer`` controller, for the same freeze-then-kill.

The tree lives at ``<hierarchy>/pvcore/<instance>/<container>``, or under
pvcore's own cgroup when only that is writable (a delegated systemd user
session). :meth:`CgroupTree.detect` returns ``None`` where pvcore cannot
create cgroups (a non-root laptop); callers then fall back to process
ancestry (see :mod:`pv_containers.runtime`).

A cgroup is named to callers as a :class:`CgroupRef`, the ``controllers``
and ``path`` fields of a ``/proc/<pid>/cgroup`` line, so a runtime that puts
containers in cgroups of its own (LXC) reports them the same way.
"""
from __future__ import annotations

import errno
import os
import re
import signal
import time
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

import structlog

log = structlog.get_logger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True)
class CgroupRef:
    """A cgroup as ``/proc/<pid>/cgroup`` names it.

    :ivar controllers: the line's second field: ``""`` for cgroup v2,
        ``"freezer"`` or ``"name=pantavisor"`` for a v1 hierarchy.
    :ivar path: the cgroup's path inside that hierarchy (``/pvcore/x/name``).
    """

    controllers: str
    path: str

    def __str__(self) -> str:
        return f"{self.controllers}:{self.path}"

    @classmethod
    def parse(cls, text: str) -> "CgroupRef":
        """``"freezer:/a/b"`` or ``":/a/b"`` (the inverse of ``str()``)."""
        controllers, _, path = text.partition(":")
        return cls(controllers, path)

    def holds(self, membership: Iterable[Tuple[str, str]]) -> bool:
        """Whether a process with ``membership`` (see :func:`read_membership`)
        is in this cgroup or below it."""
        wanted = set(self.controllers.split(","))
        prefix = self.path.rstrip("/") + "/"
        for controllers, path in membership:
            if set(controllers.split(",")) == wanted and (path == self.path or path.startswith(prefix)):
                return True
        return False


def parse_membership(text: str) -> List[Tuple[str, str]]:
    """``[(controllers, path)]`` from the text of ``/proc/<pid>/cgroup``."""
    found = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            found.append((parts[1], parts[2]))
    return found


def read_membership(pid: int) -> Optional[List[Tuple[str, str]]]:
    """The cgroups of process ``pid``, or ``None`` when it is gone."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            return parse_membership(fh.read())
    except OSError:
        return None


def write_control(path: str, text: str) -> None:
    """Write ``text`` to cgroupfs control file ``path`` in one ``write()`` (no create, no buffering)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _read_pids(path: str) -> List[int]:
    try:
        with open(path) as fh:
            return [int(line) for line in fh.read().split()]
    except (OSError, ValueError):
        return []


def cgroup_mounts() -> List[Tuple[str, str, str]]:
    """``(mount point, fs type, options)`` of the cgroup mounts (``cgroup`` v1 and ``cgroup2``)."""
    found = []
    try:
        with open("/proc/self/mounts") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) >= 4 and fields[2] in ("cgroup", "cgroup2"):
                    found.append((fields[1], fields[2], fields[3]))
    except OSError:
        pass
    return found


def remove_cgroup(path: str) -> bool:
    """rmdir cgroup ``path`` and its sub-cgroups, deepest first; ``False`` while one is busy.

    :raises OSError: anything but busy (``EBUSY``, ``ENOTEMPTY``) or gone.
    """
    for root, dirs, _files in os.walk(path, topdown=False):
        for sub in dirs:
            try:
                os.rmdir(os.path.join(root, sub))
            except FileNotFoundError:
                pass
            except OSError:
                return False
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        raise
    return True


class CgroupTree:
    """The container cgroups of one pvcore instance (see the module docstring).

    :param mount: where the hierarchy is mounted.
    :param controllers: its ``/proc/<pid>/cgroup`` field (``""`` for v2).
    :param base: the instance's directory inside the hierarchy.
    """

    def __init__(self, mount: str, controllers: str, base: str):
        self.mount = mount
        self.controllers = controllers
        self.base = base
        self.v2 = controllers == ""

    def __repr__(self) -> str:
        return f"CgroupTree({self.mount!r}, {self.controllers!r}, {self.base!r})"

    # -- finding a hierarchy ---------------------------------------------------

    @classmethod
    def detect(cls, instance: str) -> Optional["CgroupTree"]:
        """The first hierarchy where pvcore can create ``pvcore/<instance>``, or ``None``."""
        mounts = cgroup_mounts()
        candidates = []
        for point, fstype, _ in mounts:
            if fstype == "cgroup2":
                candidates.append((point, ""))
        for point, fstype, options in mounts:
            if fstype == "cgroup" and "freezer" in options.split(","):
                candidates.append((point, "freezer"))
        own = read_membership(os.getpid()) or []
        for point, controllers in candidates:
            if controllers == "" and not os.path.exists(os.path.join(point, "cgroup.procs")):
                continue
            mine = [path for ctl, path in own if ctl == controllers]
            parents = ["/"] + [p for p in mine[:1] if p not in ("/", "")]
            for parent in parents:
                base = os.path.join(parent, "pvcore", instance)
                tree = cls(point, controllers, base)
                try:
                    os.makedirs(tree._dir(None), exist_ok=True)
                except OSError:
                    continue
                tree._sweep_siblings()
                return tree
        return None

    def _sweep_siblings(self) -> None:
        """Remove other instances' directories that hold no cgroup any more.

        NOTE: rmdir fails on a directory with child cgroups, so a live
        instance loses at most an empty directory, which :meth:`create`
        makes again; leftover container cgroups are only ever killed by
        their own instance (:meth:`kill_all` at its next start).
        """
        parent = os.path.dirname(self._dir(None))
        try:
            siblings = [e.path for e in os.scandir(parent) if e.is_dir()]
        except OSError:
            return
        for path in siblings:
            if path != self._dir(None):
                try:
                    os.rmdir(path)
                except OSError:
                    pass

    # -- paths ------------------------------------------------------------------

    def _dir(self, name: Optional[str]) -> str:
        rel = self.base if name is None else os.path.join(self.base, name)
        return os.path.join(self.mount, rel.lstrip("/"))

    def ref(self, name: str) -> CgroupRef:
        """The :class:`CgroupRef` of container cgroup ``name``."""
        return CgroupRef(self.controllers, os.path.join(self.base, _SAFE.sub("_", name)))

    def owns(self, membership: Iterable[Tuple[str, str]]) -> bool:
        """Whether a process with ``membership`` sits in one of this tree's cgroups."""
        return CgroupRef(self.controllers, self.base).holds(membership)

    def procs_file(self, name: str) -> str:
        """The ``cgroup.procs`` a new member writes its pid to."""
        return os.path.join(self._dir(_SAFE.sub("_", name)), "cgroup.procs")

    # -- lifecycle ----------------------------------------------------------------

    def create(self, name: str) -> CgroupRef:
        """Create (or reuse, once emptied) the cgroup of container ``name``."""
        path = self._dir(_SAFE.sub("_", name))
        if os.path.isdir(path):
            self.kill(name)
        os.makedirs(path, exist_ok=True)
        return self.ref(name)

    def pids(self, name: str) -> List[int]:
        """Every process in cgroup ``name`` and below it."""
        found = []
        for root, _dirs, _files in os.walk(self._dir(_SAFE.sub("_", name))):
            found += _read_pids(os.path.join(root, "cgroup.procs"))
        return found

    def kill(self, name: str, timeout: float = 5.0) -> bool:
        """SIGKILL every process of cgroup ``name`` (sub-cgroups too), then remove it.

        :return: True when the cgroup is gone (it may survive ``timeout`` only
            if a process is stuck in the kernel; the next call retries).
        """
        path = self._dir(_SAFE.sub("_", name))
        return self._kill_dir(path, timeout)

    def _kill_dir(self, path: str, timeout: float) -> bool:
        if not os.path.isdir(path):
            return True
        deadline = time.monotonic() + timeout
        while True:
            self._signal_all(path)
            if remove_cgroup(path):
                return True
            if time.monotonic() >= deadline:
                log.warning("cgroup_not_removed", cgroup=path, pids=self._pids_under(path))
                return False
            time.sleep(0.01)

    def _pids_under(self, path: str) -> List[int]:
        found = []
        for root, _dirs, _files in os.walk(path):
            found += _read_pids(os.path.join(root, "cgroup.procs"))
        return found

    def _signal_all(self, path: str) -> None:
        kill_file = os.path.join(path, "cgroup.kill")
        if self.v2 and os.path.exists(kill_file):
            try:
                write_control(kill_file, "1")
                return
            except OSError:
                pass
        # NOTE: frozen, no member can fork between reading cgroup.procs and
        # the kill; SIGKILL reaches frozen tasks once they thaw (v1) or at
        # once (v2).
        freeze, frozen, thawed = (("cgroup.freeze", "1", "0") if self.v2 else ("freezer.state", "FROZEN", "THAWED"))
        freeze_file = os.path.join(path, freeze)
        can_freeze = os.path.exists(freeze_file)
        if can_freeze:
            try:
                write_control(freeze_file, frozen)
            except OSError:
                can_freeze = False
        for pid in self._pids_under(path):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if can_freeze:
            try:
                write_control(freeze_file, thawed)
            except OSError:
                pass

    def names(self) -> List[str]:
        """Names of the container cgroups that exist now."""
        try:
            return sorted(e.name for e in os.scandir(self._dir(None)) if e.is_dir())
        except OSError:
            return []

    def kill_all(self, keep: Iterable[str] = ()) -> List[str]:
        """Kill every container cgroup but ``keep`` (a crashed worker's leftovers).

        :return: the names of the cgroups that held processes.
        """
        keep = {_SAFE.sub("_", k) for k in keep}
        killed = []
        for name in self.names():
            if name in keep:
                continue
            if self._pids_under(self._dir(name)):
                killed.append(name)
            self.kill(name)
        return killed

    def close(self) -> None:
        """Remove the (empty) instance directory and, if unused, ``pvcore/``."""
        for path in (self._dir(None), os.path.dirname(self._dir(None))):
            try:
                os.rmdir(path)
            except OSError:
                return
