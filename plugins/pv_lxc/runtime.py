"""The LXC runtime: each container of the revision as a real LXC container.

``start`` mounts the container's rootfs object (squashfs, read-only, through
a loop device), its ``volumes`` objects likewise, a tmpfs for this start's
``boot`` storage, lays a writable overlay on the rootfs (over its ``_config``
files) whose upper layer is the ``lxc-overlay`` storage by persistence (that
tmpfs, or under ``<storage>/disks/``), writes the LXC config (:mod:`pv_lxc.config`) and
runs ``lxc-start -F`` as a supervised process whose output is the console
log. ``stop`` asks LXC to halt it (``lxc-stop -t``: the config's halt
signal, SIGKILL after the timeout), then unmounts everything.

Every host resource is written to ``<lxc_path>/<name>/record.json`` *before*
it is taken, so :func:`cleanup_leftovers` can undo the work of a worker that
was killed with SIGKILL: kill what still runs in the container's cgroups,
remove those cgroups, unmount, release the loop devices.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import structlog

from pvcore.fsutil import atomic_write, write_tree
from pvcore.supervisor import start_time

from . import config as lxc_config
from . import loops, mounts, targets

log = structlog.get_logger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VOLUME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
PERSISTENCE = ("permanent", "revision", "boot")
OVERLAY = "lxc-overlay"


class StartError(RuntimeError):
    """The container could not be set up or started (the message says why)."""


# -- records -------------------------------------------------------------------


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
    """rmdir the cgroups ``dirs``, children first, and LXC's monitor sibling of each.

    A cgroup whose last process was just killed stays busy until that process
    is reaped, so a busy one is retried for up to ``timeout`` seconds.
    """
    paths = []
    for top in dirs:
        leaf = os.path.basename(top)
        paths.append(top)
        if leaf.startswith("lxc.payload."):
            paths.append(os.path.join(os.path.dirname(top), "lxc.monitor." + leaf[len("lxc.payload."):]))
    deadline = time.monotonic() + timeout
    while True:
        busy = []
        for path in paths:
            if not os.path.isdir(path):
                continue
            for root, subdirs, _files in os.walk(path, topdown=False):
                for sub in subdirs:
                    try:
                        os.rmdir(os.path.join(root, sub))
                    except OSError:
                        pass
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:
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
        socket_path = os.path.abspath(core.settings.socket_path)
        console = os.path.join(self.storage, "logs", container.rev, name, "console.log")
        views = self._views(container, os.path.dirname(console))
        # NOTE: the hardening baseline is for non-mgmt containers (docs/architecture.md §7.1)
        hardening = None if "mgmt" in (container.roles or ()) else self.pids_max
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
                raise StartError(f"lxc-start exited with {proc.returncode}: {_tail(lxc_log)}")
            if monitor_exe is None:
                monitor_exe = _exe(proc.pid)
            for child in _children(proc.pid):
                # (a hook LXC runs is another program too, but in the host's pid namespace)
                exe = _exe(child)
                if exe is not None and monitor_exe is not None and exe != monitor_exe \
                        and _ns(child, "pid") not in (None, host_pid_ns):
                    return child
            if time.monotonic() > deadline:
                raise StartError(f"container init did not appear within {self.start_timeout}s: {_tail(lxc_log)}")
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
        self._running.pop(handle.name, None)
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


_ENDED = re.compile(rb"Child <\d+> ended on (?:error \((\d+)\)|signal[^(]*\((\d+)\))")


def container_exit_status(lxc_log: str, lxc_start_status: int) -> int:
    """The container init's exit status: ``lxc-start -F`` exits with the low
    byte of the init's raw wait status, so an init that exited 3 reads 0.
    LXC logs the real one at INFO; a signal counts ``128 + n``, as LXC's own
    convention. Without that line (lxc-start failed itself, or exit 0) the
    tool's status stands."""
    matches = _ENDED.findall(_tail(lxc_log, 8192).encode())
    if not matches:
        return lxc_start_status
    exited, signalled = matches[-1]
    return int(exited) if exited else 128 + int(signalled)


def _tail(path: str, size: int = 600) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return fh.read().decode(errors="replace").strip()
    except OSError:
        return ""
