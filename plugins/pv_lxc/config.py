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
hardening :data:`BASELINE` (:func:`baseline`), written *before* its own
lines: LXC applies a config in order, so a line of the container's own for
the same key — an explicit grant — wins (docs/architecture.md §7.1).
"""
from __future__ import annotations

import os
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


def baseline(pids_max: int, keys: Collection[str] = ()) -> List[str]:
    """The hardening lines of a non-mgmt container (docs/architecture.md §7.1).

    :param pids_max: its ``pids.max`` (``0``: no limit).
    :param keys: the keys the container's own config sets; ``lxc.cap.keep``
        there replaces the capability drop (LXC refuses both).
    """
    lines = ["# pvcore: hardening baseline of a non-mgmt container (its own lines below may grant more)"]
    if "lxc.cap.keep" not in keys:
        lines.append("lxc.cap.drop = " + " ".join(DROPPED_CAPABILITIES))
    for prefix in ("lxc.cgroup", "lxc.cgroup2"):  # as LXC's common.conf: the one that applies here is used
        lines.append(f"{prefix}.devices.deny = a")
        lines += [f"{prefix}.devices.allow = {device}" for device in ALLOWED_DEVICES]
    if pids_max > 0:
        lines.append(f"lxc.{_controller_version('pids')}.pids.max = {pids_max}")
    lines.append("lxc.mount.auto = cgroup:ro")
    if os.path.exists(SECCOMP_PROFILE):
        lines.append(f"lxc.seccomp.profile = {SECCOMP_PROFILE}")
    return lines


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
            views: Sequence[Tuple[str, str]] = (), hardening: Optional[int] = None) -> str:
    """The config file for container ``name``.

    :param source: the container's ``lxc.container.conf`` (may be empty).
    :param rootfs: the directory where its root overlay is mounted.
    :param volumes: volume name (``root.squashfs``, ``docker--data`` …) →
        the host directory pvcore mounted or created for it.
    :param socket_path: the pv-ctrl socket, bound at ``/pantavisor/pv-ctrl``.
    :param views: ``(host directory, name)`` pairs bound read-only at
        ``/pantavisor/<name>`` (metadata and logs).
    :param hardening: ``None`` for a mgmt container (its config as is);
        otherwise the :func:`baseline` applies, with this ``pids.max``.
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
        head += baseline(hardening, keys)
    tail = [
        "# pvcore: rootfs, console, /pantavisor",
        f"lxc.rootfs.path = dir:{rootfs}",
        "lxc.console.path = none",
        f"lxc.mount.entry = {socket_path} pantavisor/pv-ctrl none bind,create=file 0 0",
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

