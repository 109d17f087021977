"""The LXC configuration a container runs with: its own ``lxc.container.conf``, re-pointed at our mounts.

pvr writes a container's config for Pantavisor's layout: the rootfs as
``overlayfs:/volumes/<name>/root.squashfs:/volumes/<name>/lxc-overlay/upper``,
volumes under ``/volumes/<name>/<volume>``. pvcore mounts those itself (see
:mod:`pv_lxc.runtime`), so :func:`compose` keeps every line of the
container's config except the few keys pvcore owns, rewrites ``/volumes/...``
sources to where pvcore mounted them, and adds pvcore's own lines around it
(docs/architecture.md §7, "Container runtimes").
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Tuple

#: Keys pvcore sets itself: the rootfs it mounted, the console it captures, the log it reads.
OWNED_PREFIXES = ("lxc.rootfs", "lxc.console", "lxc.log.")

#: Defaults placed before the container's own lines, which may override them.
DEFAULTS = (
    "lxc.autodev = 1",
    "lxc.apparmor.profile = unconfined",
    "lxc.tty.max = 0",
)


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
            views: Sequence[Tuple[str, str]] = ()) -> str:
    """The config file for container ``name``.

    :param source: the container's ``lxc.container.conf`` (may be empty).
    :param rootfs: the directory where its root overlay is mounted.
    :param volumes: volume name (``root.squashfs``, ``docker--data`` …) →
        the host directory pvcore mounted or created for it.
    :param socket_path: the pv-ctrl socket, bound at ``/pantavisor/pv-ctrl``.
    :param views: ``(host directory, name)`` pairs bound read-only at
        ``/pantavisor/<name>`` (metadata and logs).
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
        head.append("lxc.mount.auto = proc:mixed sys:ro cgroup:mixed")
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

