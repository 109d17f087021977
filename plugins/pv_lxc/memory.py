"""Memory bounds of non-mgmt LXC containers: each one's limit, and one budget for all of them.

A container's memory — anonymous memory and the pages of its boot tmpfs
alike, since tmpfs pages are charged to the memory cgroup of the process
that writes them — is bounded twice (docs/architecture.md §7.1):

* each non-mgmt container's own cgroup gets ``lxc_memory_max`` (a line of
  the hardening baseline, :mod:`pv_lxc.config`), so one tenant cannot take
  what the others need;
* every non-mgmt container's cgroup is created below one parent cgroup,
  ``pvcore-lxc/<instance>`` (:class:`TenantBudget`), whose limit is
  ``lxc_tenants_memory_max``: however many tenants use their own limit, the
  host (pvcore, mgmt containers, the kernel) keeps the rest.

Sizes are written as ``lxc_boot_size`` is (bytes, with ``k``/``m``/``g``, or
a percentage of RAM), and ``0`` or nothing means no bound.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
from dataclasses import dataclass
from typing import Optional

import structlog

from pvcore.cgroups import cgroup_mounts, write_control

log = structlog.get_logger(__name__)

_SIZE = re.compile(r"(0|[1-9][0-9]{0,15})([kmgKMG%]?)")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
PAGE = 4096
#: The parent of every instance's budget cgroup, in each hierarchy (never pvcore's CgroupTree ``pvcore/``).
PARENT = "pvcore-lxc"


def memory_size(text: str) -> str:
    """A memory bound: bytes, with ``k``/``m``/``g``, or 1% to 100% of RAM; ``0`` or empty for none."""
    text = text.strip()
    match = _SIZE.fullmatch(text)
    if text and (match is None or (match.group(2) == "%" and not 0 < int(match.group(1)) <= 100)):
        raise ValueError("a memory size: bytes, with k, m or g, or 1% to 100% of RAM; 0 or empty for none")
    return text


def mem_total() -> int:
    """The machine's RAM in bytes (``MemTotal``)."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError(errno.ENOENT, "no MemTotal in /proc/meminfo")


def to_bytes(text: str, total: Optional[int] = None) -> int:
    """Bytes of a :func:`memory_size` (``0``: no bound), page-aligned; a percentage is of ``total`` (RAM)."""
    text = memory_size(text)
    if not text:
        return 0
    number, unit = _SIZE.fullmatch(text).groups()
    if unit == "%":
        value = (mem_total() if total is None else total) * int(number) // 100
    else:
        value = int(number) * _UNITS[unit.lower()]
    return value // PAGE * PAGE


@dataclass(frozen=True)
class Hierarchy:
    """Where the memory controller is mounted: ``version`` is LXC's key prefix (``cgroup``, ``cgroup2``)."""

    mount: str
    version: str

    @property
    def swap_file(self) -> str:
        """The file that bounds swap beside the limit: ``memsw`` (v1) or ``swap.max`` (v2)."""
        return "memory.memsw.limit_in_bytes" if self.version == "cgroup" else "memory.swap.max"

    @property
    def limit_file(self) -> str:
        return "memory.limit_in_bytes" if self.version == "cgroup" else "memory.max"


def find_hierarchy() -> Optional[Hierarchy]:
    """The memory controller's hierarchy here: a v1 ``memory`` mount, else a v2 one offering it; ``None``."""
    mounts = cgroup_mounts()
    for point, fstype, options in mounts:
        if fstype == "cgroup" and "memory" in options.split(","):
            return Hierarchy(point, "cgroup")
    for point, fstype, _options in mounts:
        try:
            with open(os.path.join(point, "cgroup.controllers")) as fh:
                if fstype == "cgroup2" and "memory" in fh.read().split():
                    return Hierarchy(point, "cgroup2")
        except OSError:
            continue
    return None


def swap_bounded(hierarchy: Optional[Hierarchy]) -> bool:
    """Whether swap can be bounded here (v1 with swap accounting, ``memsw``; v2 ``memory.swap.max``)."""
    if hierarchy is None:
        return False
    if hierarchy.version == "cgroup":
        return os.path.exists(os.path.join(hierarchy.mount, hierarchy.swap_file))
    # v2: the root has no memory.* files; a child that has the controller shows swap.max if swap is accounted
    try:
        return any(os.path.exists(os.path.join(entry.path, hierarchy.swap_file))
                   for entry in os.scandir(hierarchy.mount) if entry.is_dir())
    except OSError:
        return False


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


class TenantBudget:
    """The parent cgroup of every non-mgmt container of one pvcore instance, and its memory limit.

    Per instance, ``pvcore-lxc/<instance>/`` holds two parents: ``tenants``
    (the budget: every non-mgmt container's cgroup, ``lxc.payload.<name>``)
    and ``monitors`` (LXC's ``lxc.monitor.<name>``, unbounded). LXC creates
    each container's cgroups there (``lxc.cgroup.dir.container`` and
    ``.monitor``, written by :mod:`pv_lxc.config`), below the root of every
    hierarchy, making missing parents itself; :meth:`ensure` makes
    ``tenants`` in the memory hierarchy first, with the limit, so no tenant
    starts outside it.

    NOTE: the monitors stay out of the budget: under memory pressure there,
    the kernel's OOM killer takes the largest process of the budget, and a
    killed ``lxc-start`` would end another tenant's container.

    :param key: what tells this instance apart (its lxc_path): hashed into the path.
    :param limit: bytes (``0``: no budget, :meth:`ensure` returns ``""``).
    """

    def __init__(self, key: str, limit: int, hierarchy: Optional[Hierarchy] = None):
        self.base = f"{PARENT}/{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        self.path = f"{self.base}/tenants"
        self.monitors = f"{self.base}/monitors"
        self.limit = limit
        self.hierarchy = hierarchy

    def ensure(self) -> str:
        """Make ``tenants`` with its limit (idempotent, before every start); its path for LXC, or ``""``.

        ``""`` — no budget — when it is off, or when this machine has no
        memory controller pvcore can write (logged: tenants then have
        their own limits only).
        """
        if self.limit <= 0 or self.hierarchy is None:
            return ""
        hierarchy = self.hierarchy
        top = os.path.join(hierarchy.mount, self.path)
        try:
            if hierarchy.version == "cgroup2":
                # NOTE: v2 gives a child memory files only once its parent enables the controller
                for parent in (hierarchy.mount, os.path.join(hierarchy.mount, PARENT),
                               os.path.join(hierarchy.mount, self.base)):
                    os.makedirs(parent, exist_ok=True)
                    write_control(os.path.join(parent, "cgroup.subtree_control"), "+memory")
            os.makedirs(top, exist_ok=True)
            if hierarchy.version == "cgroup" and _read_int(os.path.join(top, "memory.use_hierarchy")) == 0:
                # NOTE: kernels before 5.16 without systemd (a Pantavisor device) default to 0, and then
                # a child is not bounded by its parent; it is inherited at a child's creation, so before LXC's
                write_control(os.path.join(top, "memory.use_hierarchy"), "1")
            self._limit(top)
            if hierarchy.version == "cgroup2":
                write_control(os.path.join(top, "cgroup.subtree_control"), "+memory")
        except OSError as exc:
            log.warning("lxc_tenant_budget_unavailable", cgroup=top, error=str(exc))
            return ""
        return self.path

    def _limit(self, top: str) -> None:
        hierarchy, value = self.hierarchy, str(self.limit)
        swap = os.path.join(top, hierarchy.swap_file)
        if hierarchy.version == "cgroup2":
            write_control(os.path.join(top, hierarchy.limit_file), value)
            if os.path.exists(swap):
                write_control(swap, "0")  # as memsw = limit on v1: swap never extends the budget
            return
        # v1: memsw is never below the limit; lift it, set the limit, then bound memsw to it
        has_swap = os.path.exists(swap)
        if _read_int(os.path.join(top, hierarchy.limit_file)) == self.limit and \
                (not has_swap or _read_int(swap) == self.limit):
            return  # as it is (ensure runs before every start: no window with swap unbounded)
        if has_swap:
            write_control(swap, "-1")
        write_control(os.path.join(top, hierarchy.limit_file), value)
        if has_swap:
            write_control(swap, value)

    def close(self) -> None:
        """Remove the (empty) parents from every hierarchy LXC made them in; busy ones stay."""
        for point, _fstype, _options in cgroup_mounts():
            for rel in (self.path, self.monitors, self.base, PARENT):
                try:
                    os.rmdir(os.path.join(point, rel))
                except OSError:
                    pass  # gone, or still holding a cgroup (another instance's, a leftover)


def monitor_of(payload: str) -> str:
    """The cgroupfs directory of LXC's monitor cgroup for payload cgroup directory ``payload``
    (``.../lxc.payload.<name>``): its sibling, or in ``monitors`` for a tenant of a :class:`TenantBudget`."""
    parent, leaf = os.path.split(payload)
    monitor = "lxc.monitor." + leaf[len("lxc.payload."):]
    if os.path.basename(parent) == "tenants" and f"/{PARENT}/" in parent + "/":
        return os.path.join(os.path.dirname(parent), "monitors", monitor)
    return os.path.join(parent, monitor)
