"""pv_lxc: the LXC container runtime — revisions booted from their own root filesystems.

Chosen with ``PVCORE_CONTAINER_RUNTIME=lxc`` (the default stays ``process``,
so ``make run`` needs no root). Needs root, the ``lxc-*`` tools, loop
devices, squashfs and overlayfs. The engine (pv_containers) is unchanged:
statuses, recovery, groups, signals and revision switches behave as with the
process runtime; only how a container becomes a running thing differs.

For each container of the running revision, from the revision's own
artifacts (``<c>/run.json``: ``root-volume``, ``volumes``, ``config``,
``storage``; ``<c>/lxc.container.conf``):

* the rootfs object (squashfs) is mounted read-only through a loop device at
  ``<lxc_path>/<c>/mnt/<root-volume>``, each ``volumes`` object likewise;
* a tmpfs of this start (``lxc_boot_size``) is mounted at
  ``<lxc_path>/<c>/boot`` for the ``boot`` storage: fresh at every start,
  gone at stop (docs/protocol.md §D4.8);
* a writable overlay is mounted at ``<lxc_path>/<c>/rootfs``; its upper
  layer is the ``lxc-overlay`` storage by persistence: ``permanent`` →
  ``<storage>/disks/perm/<c>/``, ``revision`` →
  ``<storage>/disks/rev/<rev>/<c>/``, ``boot`` (and unknown) → the boot
  tmpfs; other ``storage`` entries become directories there too; its
  topmost lower layer holds the container's ``_config`` files, copied for
  this start into ``<lxc_path>/<c>/configs/`` (§D2.5);
* the container's ``lxc.container.conf`` is applied, with pvcore owning
  ``lxc.rootfs.*``, ``lxc.console.*`` and ``lxc.log.*`` and ``/volumes/<c>/<v>``
  mount sources re-pointed at the mounts above (:mod:`pv_lxc.config`); the
  pv-ctrl socket is bound at ``/pantavisor/pv-ctrl``, the metadata and log
  views read-only beside it (§D4.9);
* ``lxc-start -F`` runs it as a supervised process; the container's console
  (init's stdout/stderr) is ``<storage>/logs/<rev>/<c>/console.log``;
* stop is ``lxc-stop -t <stop_timeout>`` (the config's halt signal, SIGPWR by
  default, then SIGKILL), then every mount is undone and every loop device
  released.

Callers are identified by cgroup and pid namespace: the runtime reports the
cgroups LXC made for each running container (``cgroups(handle)``, one per
hierarchy) and the engine its init (``pvcore_caller_leaders``), so the core's
resolver names a process that container only when every hierarchy holds it
and it is in (or below) the init's pid namespace — ``lxc-attach`` and escaped
processes included, a tenant that moved itself in one hierarchy not
(docs/architecture.md §6). This plugin also resolves first: a peer in an LXC
payload cgroup that no running container owns is an unknown caller — never
the host, although it runs as uid 0 like pvcore.

Hardening: a non-mgmt container runs under the baseline of
:mod:`pv_lxc.config` (capabilities, device allow-list, ``pids.max``, a
memory limit, read-only cgroupfs, seccomp) unless its own config grants
more, in a parent cgroup whose limit is the memory budget of all non-mgmt
containers together (:mod:`pv_lxc.memory`); loop devices it attached itself
go with it (:mod:`pv_lxc.loops`; docs/architecture.md §7.1).

Crash safety: each host resource is recorded in ``<lxc_path>/<c>/record.json``
before it is taken; the next worker's start (:class:`LxcCleanup`) kills what
runs in recorded cgroups, removes them, unmounts and releases loops.

Why the ``lxc-*`` tools and not liblxc's Python bindings: Debian ships the
bindings as ``python3-lxc`` for the system interpreter only, not for pvcore's
virtualenv (nor PyPI wheels); the tools are the stable interface every LXC
release keeps, and ``lxc-start -F`` gives a plain child process the existing
supervisor already knows how to record, signal and reap.

docs/architecture.md §7, "Container runtimes", has the whole picture.
"""
from __future__ import annotations

import re

import structlog

from pvcore import hookimpl
from pvcore.ownership import Owns
from pvcore.app import StashKey
from pvcore.services import Service
from pvcore.settings import Setting, SettingsError

from .memory import memory_size
from .runtime import LxcRuntime

log = structlog.get_logger(__name__)

RUNTIME: StashKey[LxcRuntime] = StashKey()


@hookimpl
def pvcore_declare_ownership():
    return Owns(paths={"<run>/lxc/": "LXC's lxcpath (the `lxc_path` setting): each container's config, "
                                     "mounts and `record.json` of the host resources it took"},
                listens=())


class LxcCleanup(Service):
    """Before the engine starts: undo what a crashed worker left (containers, mounts, loops)."""

    name = "lxc-cleanup"
    priority = 50  # before the container engine (60)

    def __init__(self, runtime: LxcRuntime):
        self._runtime = runtime

    def start(self) -> None:
        count = self._runtime.cleanup()
        if count:
            log.warning("lxc_leftovers_cleaned", containers=count)

    def stop(self) -> None:
        # after the engine (stop runs in reverse priority): its containers are gone
        self._runtime.close()


@hookimpl
def pvcore_declare_settings():
    return [
        Setting("lxc_path", str, "",
                "LXC's lxcpath for pvcore's containers (configs, mounts, records); empty means <run_dir>/lxc."),
        Setting("lxc_start_timeout", float, 10.0,
                "Seconds lxc-start gets to bring up a container's init before the start counts as failed."),
        Setting("lxc_pids_max", int, 1024,
                "pids.max (processes and threads) of each non-mgmt LXC container, part of its hardening "
                "baseline; 0 for no limit. A container's own lxc.cgroup*.pids.max line wins."),
        Setting("lxc_memory_max", memory_size, "25%",
                "Memory limit of each non-mgmt LXC container (anonymous memory and its boot tmpfs pages), part "
                "of its hardening baseline: bytes with k/m/g, or a % of RAM; 0 or empty for none. A container's "
                "own lxc.cgroup.memory.limit_in_bytes / lxc.cgroup2.memory.max line wins."),
        Setting("lxc_tenants_memory_max", memory_size, "50%",
                "Memory budget of all non-mgmt LXC containers together: their cgroups live under one parent "
                "cgroup (pvcore-lxc/<instance>) with this limit, so the host keeps the rest however many "
                "there are. Same syntax as lxc_memory_max; 0 or empty for no shared parent."),
        Setting("lxc_boot_size", tmpfs_size, "25%",
                "Size of the tmpfs each container start gets for its boot-persistent storage (the rootfs "
                "overlay's upper layer by default): tmpfs size= syntax, bytes with k/m/g or a % of RAM."),
    ]


_TMPFS_SIZE = re.compile(r"[1-9][0-9]{0,15}[kmgKMG%]?")


def tmpfs_size(text: str) -> str:
    """A tmpfs ``size=``: a number of bytes, with ``k``/``m``/``g``, or a percentage of RAM (not 0)."""
    if not _TMPFS_SIZE.fullmatch(text) or (text.endswith("%") and int(text[:-1]) > 100):
        raise ValueError("a tmpfs size: bytes, with k, m or g, or 1% to 100% of RAM")
    return text


def _selected(core) -> bool:
    try:
        return core.settings.get("container_runtime") == "lxc"
    except SettingsError:  # no container engine loaded: no runtime to provide
        return False


@hookimpl
def pvcore_startup(core):
    if _selected(core):
        core.stash[RUNTIME] = LxcRuntime(core)


@hookimpl
def pvcore_services(core):
    runtime = core.stash.get(RUNTIME)
    return [LxcCleanup(runtime)] if runtime is not None else []


@hookimpl(optionalhook=True)
def pv_containers_runtime(core):
    return core.stash.get(RUNTIME)


@hookimpl(tryfirst=True)
def pvcore_identify_caller(core, pid):
    runtime = core.stash.get(RUNTIME)
    return runtime.identify(pid) if runtime is not None else None
