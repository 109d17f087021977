"""The LXC runtime: each container of the revision as a real LXC container.

``start`` mounts the container's rootfs object (squashfs, read-only, through
a loop device), its ``volumes`` objects likewise, a tmpfs for this start's
``boot`` storage, lays a writable overlay on the rootfs (over its ``_config``
files) whose upper layer is the ``lxc-overlay`` storage by persistence (that
tmpfs, or under ``<storage>/disks/``), writes the LXC config (:mod:`pv_lxc.config`) and
runs ``lxc-start -F`` as a supervised process whose output is the console
log. ``stop`` asks LXC to halt it (``lxc-stop -t``: the config's halt
signal, SIGKILL after the timeout), then unmounts everything.

Every host resource is recorded before it is taken (:mod:`pv_lxc.host`), so
the next worker can undo what a worker killed with SIGKILL left.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import structlog

from pvcore.fsutil import atomic_write, write_tree
from pvcore.supervisor import start_time

from . import config as lxc_config
from . import loops, memory, mounts, targets
from .host import Record, cgroup_dirs, cleanup_leftovers, read_cgroups, teardown
from .lxclog import container_exit_status, tail

log = structlog.get_logger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VOLUME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
PERSISTENCE = ("permanent", "revision", "boot")
OVERLAY = "lxc-overlay"


class StartError(RuntimeError):
    """The container could not be set up or started (the message says why)."""


# -- records -------------------------------------------------------------------


@dataclass
class LxcHandle:
    """A started container: the ``lxc-start -F`` process and what it holds."""

    name: str
    proc: subprocess.Popen
    init_pid: int
    cgroups: Dict[str, str]
    record: Record
    lxc_log: str = ""


def _children(pid: int) -> List[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def _ns(pid: int, kind: str) -> Optional[str]:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _exe(pid: int) -> Optional[str]:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def own_cgroups(cgroups: Mapping[str, str]) -> Dict[str, str]:
    """The entries of ``cgroups`` that are the container's own: never a root, never pvcore's cgroup
    or one of its ancestors (so a teardown can never kill or remove what is not the container's)."""
    ours = read_cgroups(os.getpid())
    result = {}
    for key, path in cgroups.items():
        mine = ours.get(key, "/")
        if path in ("", "/") or path == mine or mine.startswith(path.rstrip("/") + "/"):
            continue
        result[key] = path
    return result


class LxcRuntime:
    """Containers as LXC containers, through the ``lxc-*`` tools (see the module docstring).

    :param core: the core (settings, supervisor, hooks for objects and states).
    """

    name = "lxc"

    def __init__(self, core):
        self._core = core
        settings = core.settings
        self.storage = os.path.abspath(settings.storage_dir)
        self.lxc_path = os.path.abspath(settings.get("lxc_path") or os.path.join(settings.run_dir, "lxc"))
        self.start_timeout = settings.get("lxc_start_timeout")
        self.pids_max = settings.get("lxc_pids_max")
        self.boot_size = settings.get("lxc_boot_size")
        self.memory_max = memory.to_bytes(settings.get("lxc_memory_max"))
        self.budget = memory.TenantBudget(self.lxc_path, memory.to_bytes(settings.get("lxc_tenants_memory_max")))
        self._running: Dict[str, LxcHandle] = {}

    # -- engine interface ------------------------------------------------------

    def start(self, container) -> LxcHandle:
        name = container.name
        if not _NAME.match(name):
            raise StartError(f"container name {name!r} is not a valid LXC name")
        base = os.path.join(self.lxc_path, name)
        leftover = Record.load(os.path.join(base, "record.json"))
        if leftover is not None:
            teardown(leftover)
        os.makedirs(base, exist_ok=True)
        record = Record(os.path.join(base, "record.json"), name, self.lxc_path)
        record.save()
        try:
            return self._start(container, base, record)
        except BaseException:
            teardown(record)
            self._core.sockets.close(name)
            raise

    def _object(self, spec, file: str) -> str:
        sha = spec.objects.get(file)
        if not isinstance(sha, str):
            raise StartError(f"{spec.folder}/{file} is not an object of the revision")
        path = self._core.call("pv_objects_object_path", sha=sha)
        if not path:
            raise StartError(f"object {sha} ({spec.folder}/{file}) is not stored")
        return path

    def _mount_image(self, record: Record, image: str, target: str) -> None:
        os.makedirs(target, exist_ok=True)
        record.mounts.append(target)
        record.save()
        device = mounts.mount_squashfs(image, target)
        record.loops.append((device, os.path.realpath(image)))
        record.save()

    def _disk(self, container, folder: str, volume: str, spec: Any, boot: str) -> str:
        """The host directory of storage ``volume`` by its persistence (docs/protocol.md §D4.8).

        ``permanent`` and ``revision`` are directories of ``<storage>/disks``;
        ``boot`` (and anything unknown) is a directory of this start's tmpfs
        ``boot``: fresh at every start, gone when the container stops.
        """
        persistence = spec.get("persistence") if isinstance(spec, Mapping) else None
        if persistence == "permanent":
            path = os.path.join(self.storage, "disks", "perm", folder, volume)
        elif persistence == "revision":
            path = os.path.join(self.storage, "disks", "rev", container.rev, folder, volume)
        else:
            path = os.path.join(boot, volume)
        os.makedirs(path, exist_ok=True)
        return path

    def _config_overlay(self, spec, base: str) -> Optional[str]:
        """The container's ``_config`` files (docs/protocol.md §D2.5), copied into a new
        ``<base>/configs`` for this start; ``None`` when it has none."""
        if not spec.configs:
            return None
        files = {}
        for path, value in spec.configs.items():
            if isinstance(value, bytes):
                files[path] = value
            else:
                source = self._core.call("pv_objects_object_path", sha=value)
                if not source:
                    raise StartError(f"object {value} (_config/{spec.name}/{path}) is not stored")
                files[path] = source
        root = os.path.join(base, "configs")
        os.mkdir(root, 0o755)
        skipped = write_tree(root, files)
        if skipped:
            log.warning("lxc_config_overlay_skipped", container=spec.name, paths=skipped)
        return root

    def _views(self, container, logs: str) -> List[Tuple[str, str]]:
        """What ``/pantavisor`` shows beside ``pv-ctrl``, read-only (docs/protocol.md §D4.9).

        A mgmt container sees every metadata key and every log; any other
        its own keys (``<name>.<key>`` as ``<key>``) and its own logs of
        this revision.
        """
        mgmt = "mgmt" in container.roles
        views = []
        meta = self._core.call("pv_metadata_views", container=None if mgmt else container.name) or {}
        for view in ("user-meta", "device-meta"):
            if meta.get(view):
                views.append((os.path.abspath(meta[view]), view))
        logs = os.path.join(self.storage, "logs") if mgmt else logs
        os.makedirs(logs, exist_ok=True)
        views.append((logs, "logs"))
        return views

    def _start(self, container, base: str, record: Record) -> LxcHandle:
        # NOTE: everything about the container comes from the revision model
        # (``container.spec``, docs/architecture.md §3): no state JSON is read here.
        core, name, spec = self._core, container.name, container.spec
        run, folder = spec.run, spec.folder
        if not _NAME.match(folder):  # never "..": it names paths
            raise StartError(f"container folder {folder!r} is not a valid name")
        root_volume = run.get("root-volume")
        if not isinstance(root_volume, str) or not _VOLUME.match(root_volume):
            raise StartError(f"{folder}/run.json has no valid root-volume")
        volumes: Dict[str, str] = {}
        lower = os.path.join(base, "mnt", root_volume)
        self._mount_image(record, self._object(spec, root_volume), lower)
        volumes[root_volume] = lower
        for volume in run.get("volumes") or ():
            if isinstance(volume, str) and _VOLUME.match(volume) and volume != root_volume:
                target = os.path.join(base, "mnt", volume)
                self._mount_image(record, self._object(spec, volume), target)
                volumes[volume] = target
        # One tmpfs per start holds every boot-persistent volume, the rootfs
        # overlay's upper layer by default: a crash restart, an API restart or
        # a revision switch starts from nothing, as upstream's tmpfs does.
        boot = os.path.join(base, "boot")
        os.makedirs(boot, exist_ok=True)
        record.mounts.append(boot)
        record.save()
        mounts.mount_tmpfs(boot, self.boot_size)
        storage = run.get("storage") if isinstance(run.get("storage"), Mapping) else {}
        for volume, persistence in storage.items():
            if isinstance(volume, str) and _VOLUME.match(volume) and volume != OVERLAY:
                volumes[volume] = self._disk(container, folder, volume, persistence, boot)
        overlay = self._disk(container, folder, OVERLAY, storage.get(OVERLAY), boot)
        upper, work = os.path.join(overlay, "upper"), os.path.join(overlay, "work")
        os.makedirs(upper, exist_ok=True)
        os.makedirs(work, exist_ok=True)
        volumes[OVERLAY] = overlay
        config = self._config_overlay(spec, base)
        rootfs = os.path.join(base, "rootfs")
        os.makedirs(rootfs, exist_ok=True)
        record.mounts.append(rootfs)
        record.save()
        # the configuration overlay is the topmost lower layer: over the squashfs, under the upper
        mounts.mount_overlay([config, lower] if config else [lower], upper, work, rootfs)

        source = ""
        if spec.config is not None:
            with open(self._object(spec, spec.config), errors="replace") as fh:
                source = fh.read()
        # its own pv-ctrl socket: a flood fills only its own backlog (docs/architecture.md, "Connections")
        socket_path = core.sockets.open(name)
        console = os.path.join(self.storage, "logs", container.rev, name, "console.log")
        views = self._views(container, os.path.dirname(console))
        # NOTE: the hardening baseline is for non-mgmt containers (docs/architecture.md §7.1)
        hardening = None if "mgmt" in (container.roles or ()) else self._hardening()
        text = lxc_config.compose(name, source, rootfs, volumes, socket_path, views, hardening)
        # NOTE: no mount target may be made by LXC: it would follow the container's symlinks
        # on the host (pv_lxc.targets)
        targets.ensure_pantavisor(rootfs, {"pv-ctrl": False, **{view: True for _, view in views}})
        text = targets.prepare_config(rootfs, text)
        atomic_write(os.path.join(base, "config"), text)

        lxc_log = os.path.join(base, "lxc.log")
        proc = core.supervisor.spawn(
            "lxc-" + name,
            # INFO: LXC logs the init's own exit status ("Child <pid> ended on
            # error (3)"), which lxc-start -F's status loses (container_exit_status).
            ["lxc-start", "-F", "-n", name, "-P", self.lxc_path, "-o", lxc_log, "-l", "INFO"],
            cwd=base, log_path=console,
        )
        try:
            init_pid = self._wait_init(proc, lxc_log)
        except BaseException:
            core.supervisor.stop(proc, 1.0)
            raise
        cgroups = own_cgroups(read_cgroups(init_pid))
        record.init = (init_pid, start_time(init_pid) or "")
        record.cgroups = cgroup_dirs(cgroups)
        # its own filesystems: the overlay, this start's tmpfs, what only its mount namespace has
        record.devices = sorted(loops.private_devices(init_pid) | {os.stat(rootfs).st_dev, os.stat(boot).st_dev})
        record.save()
        handle = LxcHandle(name, proc, init_pid, cgroups, record, lxc_log)
        self._running[name] = handle
        log.info("lxc_started", container=name, init_pid=init_pid, rootfs=root_volume,
                 overlay=overlay, cgroup=cgroups.get("0:", next(iter(cgroups.values()), None)))
        return handle

    def _hardening(self) -> lxc_config.Hardening:
        """The baseline of a non-mgmt container here; the shared parent made (or re-made) first."""
        hierarchy = self.budget.hierarchy
        if hierarchy is None and (self.memory_max or self.budget.limit):
            hierarchy = self.budget.hierarchy = memory.find_hierarchy()
            if hierarchy is None:
                log.warning("lxc_memory_unbounded", why="no memory cgroup controller on this machine")
        return lxc_config.Hardening(
            pids_max=self.pids_max, memory_max=self.memory_max,
            memory_cgroup=hierarchy.version if hierarchy else "",
            memory_swap=memory.swap_bounded(hierarchy), cgroup_dir=self.budget.ensure(),
            monitor_dir=self.budget.monitors)

    def _wait_init(self, proc: subprocess.Popen, lxc_log: str) -> int:
        """The container's init, once it runs: the child of ``lxc-start`` that exec'd another program
        in a new pid namespace.

        LXC moves the child into the container's namespaces and cgroups
        before it execs init, so from then on its cgroups are the container's.
        """
        monitor_exe = _exe(proc.pid)
        host_pid_ns = _ns(os.getpid(), "pid")
        deadline = time.monotonic() + self.start_timeout
        while True:
            if proc.poll() is not None:
                raise StartError(f"lxc-start exited with {proc.returncode}: {tail(lxc_log)}")
            if monitor_exe is None:
                monitor_exe = _exe(proc.pid)
            for child in _children(proc.pid):
                # (a hook LXC runs is another program too, but in the host's pid namespace)
                exe = _exe(child)
                if exe is not None and monitor_exe is not None and exe != monitor_exe \
                        and _ns(child, "pid") not in (None, host_pid_ns):
                    return child
            if time.monotonic() > deadline:
                raise StartError(f"container init did not appear within {self.start_timeout}s: {tail(lxc_log)}")
            time.sleep(0.005)

    def stop(self, handle: LxcHandle, timeout: float) -> None:
        proc = handle.proc
        theirs = handle.record.their_loops()  # while its root can still be looked into
        if proc.poll() is None:
            wait = max(0, math.ceil(timeout))
            argv = ["lxc-stop", "-n", handle.name, "-P", self.lxc_path]
            argv += ["-k"] if wait == 0 else ["-t", str(wait)]
            try:
                subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=wait + 5, check=False)
            except subprocess.TimeoutExpired:
                log.warning("lxc_stop_timeout", container=handle.name)
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                log.warning("lxc_monitor_kill", container=handle.name)
        self._core.supervisor.stop(proc, 1.0)
        self._release(handle, theirs)

    def pid(self, handle: LxcHandle) -> int:
        return handle.init_pid

    def poll(self, handle: LxcHandle) -> Optional[int]:
        code = handle.proc.poll()
        if code is None:
            return None
        self._core.supervisor.reaped(handle.proc)
        code = container_exit_status(handle.lxc_log, code)
        self._release(handle)
        return code

    # -- identity ----------------------------------------------------------------

    def cgroups(self, handle: LxcHandle) -> List[str]:
        """The cgroups LXC made for the container, as ``"<controllers>:<path>"`` (one per hierarchy)."""
        return [f"{key.split(':', 1)[1]}:{path}" for key, path in handle.cgroups.items()]

    def identify(self, pid: int) -> Optional[str]:
        """``""`` (unknown) for a process in an LXC payload cgroup that no running container owns.

        Such a process runs as uid 0 like pvcore: "host by uid" must never
        reach it. Processes in a running container's cgroups are left to
        the core's resolver, which weighs every hierarchy and the pid
        namespace (docs/architecture.md §6): a single hierarchy is no proof.
        """
        peer = read_cgroups(pid)
        if not peer:
            return None
        for handle in list(self._running.values()):
            for key, path in handle.cgroups.items():
                theirs = peer.get(key)
                if theirs is not None and (theirs == path or theirs.startswith(path + "/")):
                    return None
        for path in peer.values():
            if "/lxc.payload." in path or path.startswith("lxc.payload."):
                return ""
        return None

    def running(self) -> List[str]:
        return sorted(self._running)

    # -- internals -------------------------------------------------------------

    def _release(self, handle: LxcHandle, theirs: List[Tuple[str, loops.Backing]] = ()) -> None:
        if self._running.get(handle.name) is handle:  # not a later start's socket
            del self._running[handle.name]
            self._core.sockets.close(handle.name)
        teardown(handle.record, theirs)
        log.info("lxc_released", container=handle.name)

    def cleanup(self) -> int:
        """At service start: tear down leftovers (their boot tmpfs with them).

        ``<storage>/disks/boot`` is where boot storage lived before it was a
        per-start tmpfs: removed, so an old layout leaves nothing behind.
        """
        count = cleanup_leftovers(self.lxc_path)
        shutil.rmtree(os.path.join(self.storage, "disks", "boot"), ignore_errors=True)
        return count

    def close(self) -> None:
        """At service stop, once every container is gone: remove the tenants' parent cgroup."""
        self.budget.close()
