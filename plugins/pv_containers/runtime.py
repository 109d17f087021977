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
import sys
from typing import Any, List, Optional

from pvcore import hookimpl

DEFAULT_ARGV = ("{python}", "-m", "pvcore.demo.container")


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

    Environment: ``PVCORE_CONTAINER=<name>`` and ``PVCORE_CTRL_SOCKET`` (the
    absolute socket path). Working dir ``<storage>/disks/rev/<rev>/<name>``;
    console output appended to ``<storage>/logs/<rev>/<name>/console.log``.
    """

    name = "process"

    def __init__(self, core):
        self._core = core

    def start(self, container) -> Any:
        settings = self._core.settings
        storage = os.path.abspath(settings.storage_dir)
        cwd = os.path.join(storage, "disks", "rev", container.rev, container.name)
        os.makedirs(cwd, exist_ok=True)
        env = dict(os.environ)
        env.update({
            "PVCORE_CONTAINER": container.name,
            "PVCORE_CTRL_SOCKET": os.path.abspath(settings.socket_path),
        })
        return self._core.supervisor.spawn(
            "container-" + container.name,
            container_argv(container.run),
            env=env,
            cwd=cwd,
            log_path=console_log_path(storage, container.rev, container.name),
            contain=container.name,
        )

    def stop(self, handle, timeout: float) -> None:
        self._core.supervisor.stop(handle, timeout)

    def cgroups(self, handle) -> List[str]:
        ref = self._core.supervisor.cgroup_of(handle)
        return [str(ref)] if ref is not None else []

    def pid(self, handle) -> int:
        return handle.pid

    def poll(self, handle) -> Optional[int]:
        code = handle.poll()
        if code is not None:
            self._core.supervisor.reaped(handle)
        return code


@hookimpl(trylast=True)
def pv_containers_runtime(core):
    if core.settings.get("container_runtime") == "process":
        return ProcessRuntime(core)
    return None
