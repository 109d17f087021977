"""The LXC configuration a container runs with: its own ``lxc.container.conf``, re-pointed at our mounts.

pvr writes a container's config for Pantavisor's layout: the rootfs as
``overlayfs:/volumes/<name>/root.squashfs:/volumes/<name>/lxc-overlay/upper``,
volumes under ``/volumes/<name>/<volume>``. pvcore mounts those itself (see
:mod:`pv_lxc.runtime`), so :func:`compose` keeps every line of the
container's config except the few keys pvcore owns, rewrites ``/volumes/...``
sources to where pvcore mounted them, and adds pvcore's own lines around it
(docs/architecture.md §7, "Container runtimes").

pvcore never weakens a container beyond its own config (no AppArmor
``unconfined`` unless the config asks). A non-mgmt container also gets the
hardening baseline (:func:`baseline`), written *before* its own
lines: LXC applies a config in order, so a line of the container's own for
the same key — an explicit grant — wins (docs/architecture.md §7.1).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Collection, Dict, List, Mapping, Optional, Sequence, Tuple

#: Keys pvcore sets itself: the rootfs it mounted, the console it captures, the log it reads.
OWNED_PREFIXES = ("lxc.rootfs", "lxc.console", "lxc.log.")

#: Defaults placed before the container's own lines, which may override them.
DEFAULTS = (
    "lxc.autodev = 1",
    "lxc.tty.max = 0",
)

#: Capabilities a non-mgmt container loses: all but Docker's default set (chown, dac_override,
#: fowner, fsetid, kill, setgid, setuid, setpcap, net_bind_service, net_raw, sys_chroot, mknod,
#: audit_write, setfcap). sys_admin (mount, namespaces, cgroupfs), sys_module, sys_rawio, sys_boot,
#: sys_time, sys_ptrace and the rest would each hand over the host.
DROPPED_CAPABILITIES = (
    "sys_admin", "sys_module", "sys_rawio", "sys_boot", "sys_time", "sys_ptrace", "sys_pacct",
    "sys_nice", "sys_resource", "sys_tty_config", "dac_read_search", "linux_immutable", "net_admin",
    "net_broadcast", "ipc_lock", "ipc_owner", "lease", "audit_control", "audit_read", "mac_admin",
    "mac_override", "syslog", "wake_alarm", "block_suspend", "perfmon", "bpf", "checkpoint_restore",
)

#: Devices a non-mgmt container may create and use: the ones every container needs (Docker's and
#: LXC's own common.conf list, without their "any device may be mknod'ed" wildcards, and without fuse).
ALLOWED_DEVICES = (
    "c 1:3 rwm",  # null
    "c 1:5 rwm",  # zero
    "c 1:7 rwm",  # full
    "c 1:8 rwm",  # random
    "c 1:9 rwm",  # urandom
    "c 5:0 rwm",  # tty
    "c 5:1 rwm",  # console
    "c 5:2 rwm",  # ptmx
    "c 136:* rwm",  # pts
)

#: LXC's own seccomp denylist (kexec_load, open_by_handle_at, init/finit/delete_module), if installed.
SECCOMP_PROFILE = "/usr/share/lxc/config/common.seccomp"


def _controller_version(controller: str) -> str:
    """``"cgroup"`` when ``controller`` is on a cgroup v1 hierarchy here, else ``"cgroup2"`` (LXC's key prefixes)."""
    try:
        with open("/proc/self/mounts") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) >= 4 and fields[2] == "cgroup" and controller in fields[3].split(","):
                    return "cgroup"
    except OSError:
        pass
    return "cgroup2"


#: A container's own lines that bound its memory: with any of them, the baseline writes no memory line
#: (a v1 memsw below its own larger limit would make LXC fail the start).
MEMORY_KEYS = tuple(f"lxc.{prefix}.memory.{name}" for prefix in ("cgroup", "cgroup2")
                    for name in ("limit_in_bytes", "memsw.limit_in_bytes", "max", "swap.max"))


@dataclass(frozen=True)
class Hardening:
    """What the baseline of a non-mgmt container is made of (docs/architecture.md §7.1).

    :ivar pids_max: its ``pids.max`` (``0``: no limit).
    :ivar memory_max: its memory limit in bytes (``0``: none).
    :ivar memory_cgroup: LXC's key prefix for the memory controller here
        (``cgroup`` on a v1 hierarchy, ``cgroup2``), ``""`` when this machine
        has none (then no memory line: LXC would refuse it).
    :ivar memory_swap: bound swap too: v1 ``memsw`` at the limit, v2 ``swap.max = 0``.
    :ivar cgroup_dir: the parent cgroup of every non-mgmt container, whose limit is
        their shared budget (:class:`pv_lxc.memory.TenantBudget`); ``""``: LXC's default place.
    :ivar monitor_dir: the parent of their LXC monitors' cgroups, outside the budget.
    """

    pids_max: int = 1024
    memory_max: int = 0
    memory_cgroup: str = ""
    memory_swap: bool = False
    cgroup_dir: str = ""
    monitor_dir: str = ""


def baseline(hardening: Hardening, name: str, keys: Collection[str] = ()) -> List[str]:
    """The hardening lines of non-mgmt container ``name`` (docs/architecture.md §7.1).

    :param keys: the keys the container's own config sets; ``lxc.cap.keep``
        there replaces the capability drop (LXC refuses both), a memory
        limit of its own replaces the baseline's, and a cgroup placement of
        its own (``lxc.cgroup.dir*``, ``lxc.cgroup.relative``) keeps it out
        of the shared parent.
    """
    lines = ["# pvcore: hardening baseline of a non-mgmt container (its own lines below may grant more)"]
    if "lxc.cap.keep" not in keys:
        lines.append("lxc.cap.drop = " + " ".join(DROPPED_CAPABILITIES))
    for prefix in ("lxc.cgroup", "lxc.cgroup2"):  # as LXC's common.conf: the one that applies here is used
        lines.append(f"{prefix}.devices.deny = a")
        lines += [f"{prefix}.devices.allow = {device}" for device in ALLOWED_DEVICES]
    if hardening.pids_max > 0:
        lines.append(f"lxc.{_controller_version('pids')}.pids.max = {hardening.pids_max}")
    lines += _memory(hardening, keys)
    if hardening.cgroup_dir and hardening.monitor_dir and not any(key.startswith("lxc.cgroup.dir") or key == "lxc.cgroup.relative"
                                        for key in keys):
        # NOTE: LXC's own leaf names, so a payload cgroup is still recognised as one (pv_lxc.runtime.identify)
        lines.append(f"lxc.cgroup.dir.container = {hardening.cgroup_dir}/lxc.payload.{name}")
        lines.append(f"lxc.cgroup.dir.monitor = {hardening.monitor_dir}/lxc.monitor.{name}")
    lines.append("lxc.mount.auto = cgroup:ro")
    if os.path.exists(SECCOMP_PROFILE):
        lines.append(f"lxc.seccomp.profile = {SECCOMP_PROFILE}")
    return lines


def _memory(hardening: Hardening, keys: Collection[str]) -> List[str]:
    """The memory limit lines: ``limit_in_bytes`` (and ``memsw``) on v1, ``memory.max`` (and ``swap.max``) on v2."""
    limit, prefix = hardening.memory_max, hardening.memory_cgroup
    if limit <= 0 or not prefix or any(key in MEMORY_KEYS for key in keys):
        return []
    if prefix == "cgroup":
        # NOTE: in this order: LXC applies lines in order, and memsw may never be below the limit
        lines = [f"lxc.cgroup.memory.limit_in_bytes = {limit}"]
        return lines + ([f"lxc.cgroup.memory.memsw.limit_in_bytes = {limit}"] if hardening.memory_swap else [])
    lines = [f"lxc.cgroup2.memory.max = {limit}"]
    return lines + (["lxc.cgroup2.memory.swap.max = 0"] if hardening.memory_swap else [])


def _key(line: str) -> str:
    return line.split("=", 1)[0].strip() if "=" in line else ""


def rewrite_volume(value: str, name: str, volumes: Mapping[str, str]) -> str:
    """``/volumes/<name>/<vol>[/rest]`` → ``<mounted dir>[/rest]``; anything else unchanged."""
    for prefix in (f"/volumes/{name}/", f"volumes/{name}/"):
        if value.startswith(prefix):
            vol, _, rest = value[len(prefix):].partition("/")
            if vol in volumes:
                return volumes[vol] + ("/" + rest if rest else "")
    return value


#: Options of the read-only views under ``/pantavisor`` (docs/protocol.md §D4.9).
VIEW_OPTIONS = "bind,ro,nosuid,nodev,noexec,create=dir"


def compose(name: str, source: str, rootfs: str, volumes: Mapping[str, str], socket_path: str,
            views: Sequence[Tuple[str, str]] = (), hardening: Optional[Hardening] = None) -> str:
    """The config file for container ``name``.

    :param source: the container's ``lxc.container.conf`` (may be empty).
    :param rootfs: the directory where its root overlay is mounted.
    :param volumes: volume name (``root.squashfs``, ``docker--data`` …) →
        the host directory pvcore mounted or created for it.
    :param socket_path: the pv-ctrl socket, bound at ``/pantavisor/pv-ctrl``.
    :param views: ``(host directory, name)`` pairs bound read-only at
        ``/pantavisor/<name>`` (metadata and logs).
    :param hardening: ``None`` for a mgmt container (its config as is);
        otherwise the :func:`baseline` made of it applies.
    """
    own: List[str] = []
    keys = set()
    for raw in source.splitlines():
        line = raw.strip()
        key = _key(line)
        if not key:
            if line.startswith("#") or not line:
                own.append(line)
            continue
        if key.startswith(OWNED_PREFIXES):
            own.append("# pvcore owns: " + line)
            continue
        keys.add(key)
        value = line.split("=", 1)[1].strip()
        if key == "lxc.mount.entry":
            fields = value.split(None, 1)
            if fields:
                value = " ".join([rewrite_volume(fields[0], name, volumes)] + fields[1:])
        line = f"{key} = {value}"
        own.append(line)
    head = [f"# pvcore pv_lxc: container {name}", f"lxc.uts.name = {name}", *DEFAULTS]
    if "lxc.mount.auto" not in keys:
        head.append("lxc.mount.auto = proc:mixed sys:ro" + (" cgroup:mixed" if hardening is None else ""))
    if hardening is not None:
        head += baseline(hardening, name, keys)
    tail = [
        "# pvcore: rootfs, console, /pantavisor",
        f"lxc.rootfs.path = dir:{rootfs}",
        "lxc.console.path = none",
        f"lxc.mount.entry = {socket_path} pantavisor/pv-ctrl none bind,ro,create=file 0 0",
        *(f"lxc.mount.entry = {source} pantavisor/{view} none {VIEW_OPTIONS} 0 0" for source, view in views),
    ]
    return "\n".join(head + ["# from lxc.container.conf"] + own + tail) + "\n"


def config_keys(text: str) -> Dict[str, List[str]]:
    """Key → values of an LXC config (for tests and logs)."""
    result: Dict[str, List[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        key = _key(line)
        if key and not line.startswith("#"):
            result.setdefault(key, []).append(line.split("=", 1)[1].strip())
    return result

