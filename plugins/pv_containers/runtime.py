"""Container runtimes: how a container becomes a running thing.

The engine asks ``core.hook.pv_containers_runtime(core=core)`` (firstresult,
documented in :mod:`pv_containers.hookspecs`) once, when its service starts,
for an object with this interface:

``start(container) -> handle``
    Start the container and return an opaque handle. ``container`` is a
    :class:`pv_containers.model.Container`; read ``name``, ``rev`` (the
    revision), ``run`` (its run.json, read-only), ``group.name``, ``roles`` and
    ``spec`` (the revision model's container: ``objects``, ``config``, ``folder``).
    Raise to report a failed start (the engine treats it like a crash).
``stop(handle, timeout)``
    Stop it: ask politely, force it after ``timeout`` seconds. Must return
    within about ``timeout`` seconds and leave nothing behind.
``pid(handle) -> int``
    The container's init pid (the leader of its process tree).
``poll(handle) -> int or None``
    ``None`` while it runs, else its exit status (negative for a signal).
    Called often from the engine's loop: must not block. Once it returned a
    status the handle is dead; the engine never uses it again; nothing of the
    container may run any more.
``cgroups(handle) -> list of str`` (optional)
    The cgroups holding the container's processes, as
    ``"<controllers>:<path>"`` (the fields of a ``/proc/<pid>/cgroup`` line,
    :class:`pvcore.cgroups.CgroupRef`). Callers in them, or below them, are
    this container (the core's ``pvcore_caller_cgroups`` resolver). Without
    it, or with an empty list, callers are matched by process ancestry only.

The setting ``container_runtime`` names the runtime; each runtime's plugin
answers only for its own name (pv_lxc for ``lxc``); the built-in
:class:`ProcessRuntime` (``process``) is registered ``trylast``.
"""
from __future__ import annotations

import os
import shutil
import sys
from typing import Any, Dict, List, Mapping, Optional, Tuple

import structlog

from pvcore import hookimpl
from pvcore.fsutil import write_tree

log = structlog.get_logger(__name__)

DEFAULT_ARGV = ("{python}", "-m", "pvcore_demo.container")


def container_argv(run) -> List[str]:
    """The argv of run.json's ``exec`` (``{python}`` in argv[0] is this interpreter)."""
    argv = run.get("exec")
    if not isinstance(argv, (list, tuple)) or not argv or not all(isinstance(arg, str) for arg in argv):
        argv = list(DEFAULT_ARGV)
    argv = list(argv)
    if argv[0] == "{python}":
        argv[0] = sys.executable
    return argv


def console_log_path(storage_dir: str, rev: str, name: str) -> str:
    """Where the built-in runtime appends container ``name``'s output."""
    return os.path.join(os.path.abspath(storage_dir), "logs", rev, name, "console.log")


class ProcessRuntime:
    """Every container is a contained supervised process (``core.supervisor``).

    ``spawn(contain=<name>)``: its own cgroup where pvcore can create one, so
    no process of it escapes identification or a stop; otherwise a child
    subreaper, whose tree keeps its double-forked descendants.

    Working dir ``<storage>/disks/rev/<rev>/<name>``; console output appended
    to ``<storage>/logs/<rev>/<name>/console.log``. Each start gets a new
    directory ``<run>/containers/<name>/``, removed when the process ends
    (docs/protocol.md §D4.8, §D2.5), named in the environment:

    ``PVCORE_CONTAINER``, ``PVCORE_CTRL_SOCKET``
        The container's name; the absolute path of its own pv-ctrl socket
        for this start (``core.sockets``, docs/architecture.md "Connections").
    ``PVCORE_BOOT_DIR``
        An empty directory for this start: what a boot-persistent rootfs
        layer is to an LXC container.
    ``PVCORE_VOLUMES_DIR``
        One entry per run.json ``storage`` volume (but ``lxc-overlay``), by
        persistence: ``boot`` a new empty directory, ``revision`` and
        ``permanent`` a symlink to ``<storage>/disks/rev/<rev>/<name>/<vol>``
        and ``<storage>/disks/perm/<name>/<vol>``.
    ``PVCORE_CONFIG_DIR``
        The revision's ``_config/<name>/`` files, at their paths.
    """

    name = "process"

    def __init__(self, core):
        self._core = core
        self._areas: Dict[Any, Tuple[str, str]] = {}  # handle -> (its directory, container name)
        self._swept = False

    def _area(self, container) -> Dict[str, str]:
        """This start's directory (see the class docstring); its environment variables."""
        name = container.name
        if not name or "/" in name or "\0" in name or name in (".", ".."):
            raise RuntimeError(f"container name {name!r} cannot name a directory")
        settings = self._core.settings
        storage = os.path.abspath(settings.storage_dir)
        top = os.path.join(os.path.abspath(settings.run_dir), "containers")
        if not self._swept:  # what a killed worker left
            shutil.rmtree(top, ignore_errors=True)
            self._swept = True
        area = os.path.join(top, name)
        shutil.rmtree(area, ignore_errors=True)
        env = {key: os.path.join(area, sub) for key, sub in
               (("PVCORE_BOOT_DIR", "boot"), ("PVCORE_VOLUMES_DIR", "volumes"), ("PVCORE_CONFIG_DIR", "config"))}
        for path in env.values():
            os.makedirs(path)
        disks = {"permanent": os.path.join(storage, "disks", "perm", name),
                 "revision": os.path.join(storage, "disks", "rev", container.rev, name)}
        storage_spec = container.run.get("storage")
        for volume, spec in (storage_spec.items() if isinstance(storage_spec, Mapping) else ()):
            if not isinstance(volume, str) or volume == "lxc-overlay" or "/" in volume or volume in ("", ".", ".."):
                continue
            link = os.path.join(env["PVCORE_VOLUMES_DIR"], volume)
            disk = disks.get(spec.get("persistence") if isinstance(spec, Mapping) else None)
            if disk is None:
                os.mkdir(link)
            else:
                os.makedirs(os.path.join(disk, volume), exist_ok=True)
                os.symlink(os.path.join(disk, volume), link)
        files = {}
        for path, value in container.spec.configs.items():
            files[path] = value if isinstance(value, bytes) else self._core.call("pv_objects_object_path", sha=value)
            if not files[path]:
                raise RuntimeError(f"object {value} (_config/{name}/{path}) is not stored")
        skipped = write_tree(env["PVCORE_CONFIG_DIR"], files)
        if skipped:
            log.warning("config_overlay_skipped", container=name, paths=skipped)
        env["area"] = area
        return env

    def start(self, container) -> Any:
        settings = self._core.settings
        storage = os.path.abspath(settings.storage_dir)
        cwd = os.path.join(storage, "disks", "rev", container.rev, container.name)
        os.makedirs(cwd, exist_ok=True)
        area = self._area(container)
        env = dict(os.environ)
        env.update({
            "PVCORE_CONTAINER": container.name,
        })
        top = area.pop("area")
        env.update(area)
        try:
            env["PVCORE_CTRL_SOCKET"] = self._core.sockets.open(container.name)
            handle = self._core.supervisor.spawn(
                "container-" + container.name,
                container_argv(container.run),
                env=env,
                cwd=cwd,
                log_path=console_log_path(storage, container.rev, container.name),
                contain=container.name,
            )
        except BaseException:
            self._core.sockets.close(container.name)
            shutil.rmtree(top, ignore_errors=True)
            raise
        self._areas[handle] = (top, container.name)
        return handle

    def _release(self, handle) -> None:
        area = self._areas.pop(handle, None)
        if area is not None:
            top, name = area
            self._core.sockets.close(name)
            shutil.rmtree(top, ignore_errors=True)

    def stop(self, handle, timeout: float) -> None:
        self._core.supervisor.stop(handle, timeout)
        self._release(handle)

    def cgroups(self, handle) -> List[str]:
        ref = self._core.supervisor.cgroup_of(handle)
        return [str(ref)] if ref is not None else []

    def pid(self, handle) -> int:
        return handle.pid

    def poll(self, handle) -> Optional[int]:
        code = handle.poll()
        if code is not None:
            self._core.supervisor.reaped(handle)
            self._release(handle)
        return code


@hookimpl(trylast=True)
def pv_containers_runtime(core):
    if core.settings.get("container_runtime") == "process":
        return ProcessRuntime(core)
    return None
