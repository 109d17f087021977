"""What the LXC runtime holds on the host for a container, and how it is given back.

Every host resource — mount point, loop device, init pid, cgroup dirs — is
written to ``<lxc_path>/<name>/record.json`` (:class:`Record`) *before* it is
taken, so :func:`cleanup_leftovers` can undo the work of a worker that was
killed with SIGKILL: kill what still runs in the container's cgroups, remove
those cgroups, unmount, release the loop devices (docs/architecture.md §7).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import structlog

from pvcore.cgroups import remove_cgroup
from pvcore.fsutil import atomic_write
from pvcore.supervisor import start_time

from . import loops, memory, mounts

log = structlog.get_logger(__name__)


@dataclass
class Record:
    """What one container holds on the host; saved before each resource is taken."""

    path: str
    name: str
    lxc_path: str
    mounts: List[str] = field(default_factory=list)
    loops: List[Tuple[str, str]] = field(default_factory=list)
    init: Optional[Tuple[int, str]] = None
    cgroups: List[str] = field(default_factory=list)
    #: device numbers of the container's own filesystems (:mod:`pv_lxc.loops`)
    devices: List[int] = field(default_factory=list)

    def save(self) -> None:
        data = {"name": self.name, "lxc_path": self.lxc_path, "mounts": self.mounts,
                "loops": [list(item) for item in self.loops], "init": list(self.init) if self.init else None,
                "cgroups": self.cgroups, "devices": self.devices}
        atomic_write(self.path, json.dumps(data))

    def live_init(self) -> Optional[int]:
        """The container's init pid while that very process runs."""
        if self.init and start_time(int(self.init[0])) == self.init[1]:
            return int(self.init[0])
        return None

    def their_loops(self) -> List[Tuple[str, loops.Backing]]:
        """Loop devices the container attached itself (docs/architecture.md §7.1); looks while it runs."""
        pid = self.live_init()
        roots = [os.path.join(os.path.dirname(self.path), "rootfs")]
        if pid is not None:
            self.devices = sorted(set(self.devices) | loops.private_devices(pid))
            self.save()
            roots.insert(0, f"/proc/{pid}/root")
        return loops.of_container(roots, set(self.devices), [device for device, _ in self.loops])

    @classmethod
    def load(cls, path: str) -> Optional["Record"]:
        try:
            with open(path) as fh:
                data = json.load(fh)
            return cls(path, str(data["name"]), str(data["lxc_path"]), [str(m) for m in data["mounts"]],
                       [(str(d), str(b)) for d, b in data["loops"]],
                       tuple(data["init"]) if data.get("init") else None, [str(c) for c in data["cgroups"]],
                       [int(d) for d in data.get("devices", ())])
        except (OSError, ValueError, KeyError, TypeError):
            return None


# -- cgroups -------------------------------------------------------------------


def read_cgroups(pid: int) -> Dict[str, str]:
    """``/proc/<pid>/cgroup`` as ``{"<id>:<controllers>": path}``; empty if the process is gone."""
    try:
        with open(f"/proc/{pid}/cgroup") as fh:
            text = fh.read()
    except OSError:
        return {}
    result = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            result[f"{parts[0]}:{parts[1]}"] = parts[2]
    return result


def _cgroup_mounts() -> List[Tuple[str, str, set]]:
    """``(mount point, root, controllers)`` of every cgroup mount; cgroup2 has no controllers."""
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if rfields and rfields[0] in ("cgroup", "cgroup2"):
                opts = set(rfields[2].split(",")) if len(rfields) > 2 and rfields[0] == "cgroup" else set()
                found.append((fields[4], fields[3], opts if rfields[0] == "cgroup" else None))
    return found


def cgroup_dirs(cgroups: Mapping[str, str]) -> List[str]:
    """The cgroupfs directories of a ``read_cgroups`` result (one per mounted hierarchy)."""
    dirs = []
    table = _cgroup_mounts()
    for key, path in cgroups.items():
        controllers = key.split(":", 1)[1]
        wanted = set(controllers.split(",")) if controllers else None
        for point, root, opts in table:
            if (wanted is None and opts is None) or (wanted and opts is not None and wanted <= opts):
                if path == root or path.startswith(root.rstrip("/") + "/"):
                    dirs.append(point + path[len(root.rstrip("/")):])
                    break
    return dirs


def kill_cgroups(dirs: List[str], timeout: float = 3.0) -> int:
    """SIGKILL every process in the cgroup ``dirs`` (and below); return how many were signalled."""
    killed = 0
    deadline = time.monotonic() + timeout
    while True:
        pids = set()
        for top in dirs:
            for root, _subdirs, files in os.walk(top):
                if "cgroup.procs" in files:
                    try:
                        with open(os.path.join(root, "cgroup.procs")) as fh:
                            pids.update(int(p) for p in fh.read().split())
                    except (OSError, ValueError):
                        pass
        pids.discard(os.getpid())
        if not pids or time.monotonic() > deadline:
            return killed
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        time.sleep(0.02)


def remove_cgroups(dirs: List[str], timeout: float = 3.0) -> None:
    """rmdir the cgroups ``dirs``, children first, and LXC's monitor cgroup of each.

    A cgroup whose last process was just killed stays busy until that process
    is reaped, so a busy one is retried for up to ``timeout`` seconds.
    """
    paths = []
    for top in dirs:
        paths.append(top)
        if os.path.basename(top).startswith("lxc.payload."):
            paths.append(memory.monitor_of(top))
    deadline = time.monotonic() + timeout
    while True:
        busy = []
        for path in paths:
            try:
                removed = remove_cgroup(path)
            except OSError:
                removed = False
            if not removed:
                busy.append(path)
        if not busy or time.monotonic() > deadline:
            if busy:
                log.warning("lxc_cgroup_busy", cgroups=busy)
            return
        time.sleep(0.02)


# -- teardown ------------------------------------------------------------------


def teardown(record: Record, theirs: List[Tuple[str, loops.Backing]] = ()) -> None:
    """Undo everything ``record`` lists: processes, cgroups, loops the container attached, mounts, loops, files.

    :param theirs: loop devices the container attached, found while it still ran.
    """
    theirs = list(theirs) + record.their_loops()
    init = record.live_init()
    if init is not None:
        try:
            os.kill(init, signal.SIGKILL)
        except OSError:
            pass
    if record.cgroups:
        kill_cgroups(record.cgroups)
        remove_cgroups(record.cgroups)
    # NOTE: before unmounting: a loop the container attached pins its filesystems, and with
    # them pvcore's own image loops (docs/architecture.md §7.1).
    theirs += record.their_loops()
    for device, ident in dict(theirs).items():
        if loops.detach(device, ident):
            log.warning("lxc_container_loop_released", container=record.name, device=device)
    for point in reversed(record.mounts):
        try:
            mounts.unmount(point)
        except OSError as exc:
            log.error("lxc_unmount_failed", container=record.name, mount=point, error=str(exc))
    for device, backing in record.loops:
        if mounts.release_loop(device, backing):
            log.warning("lxc_loop_released", container=record.name, device=device)
    base = os.path.dirname(record.path)
    for leftover in mounts.mounted_under(base):
        mounts.unmount(leftover)
    # NOTE: never rmtree through a mount: the overlay's upper layer may be a permanent disk.
    if not mounts.mounted_under(base):
        shutil.rmtree(base, ignore_errors=True)


def cleanup_leftovers(lxc_path: str) -> int:
    """Tear down every container a previous worker left behind; return how many."""
    try:
        names = sorted(os.listdir(lxc_path))
    except FileNotFoundError:
        return 0
    count = 0
    for name in names:
        path = os.path.join(lxc_path, name, "record.json")
        record = Record.load(path)
        if record is None:
            if os.path.isdir(os.path.join(lxc_path, name)):
                for point in mounts.mounted_under(os.path.join(lxc_path, name)):
                    mounts.unmount(point)
                if not mounts.mounted_under(os.path.join(lxc_path, name)):
                    shutil.rmtree(os.path.join(lxc_path, name), ignore_errors=True)
            continue
        log.warning("lxc_leftover_cleaned", container=record.name, mounts=record.mounts,
                    loops=[d for d, _ in record.loops], init=record.init)
        teardown(record)
        count += 1
    return count


# -- the runtime -----------------------------------------------------------------


