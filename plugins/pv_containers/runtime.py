"""Container runtimes: how a container becomes a running thing.

The engine asks ``core.hook.pvcore_container_runtime(core=core)`` (firstresult)
once, when its service starts, for an object with this interface:

``start(container) -> handle``
    Start the container and return an opaque handle. ``container`` is a
    :class:`pv_containers.model.Container`; read ``name``, ``rev`` (the
    revision), ``run`` (its run.json as a dict), ``group.name`` and ``roles``.
    Raise to report a failed start (the engine treats it like a crash).
``stop(handle, timeout)``
    Stop it: ask politely, force it after ``timeout`` seconds. Must return
    within about ``timeout`` seconds and leave nothing behind.
``pid(handle) -> int``
    The container's init pid (the leader of its process tree).
``poll(handle) -> int or None``
    ``None`` while it runs, else its exit status (negative for a signal).
    Called often from the engine's loop: must not block. Once it returned a
    status the handle is dead; the engine never uses it again.

An LXC plugin returns its own runtime from ``pvcore_container_runtime``; the
built-in :class:`ProcessRuntime` is registered ``trylast``.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Any, Dict, List, Optional, Tuple

from pvcore import hookimpl
from pvcore.supervisor import proc_stat, start_time

DEFAULT_ARGV = ("{python}", "-m", "pvcore.demo.container")


def container_argv(run) -> List[str]:
    """The argv of run.json's ``exec`` (``{python}`` in argv[0] is this interpreter)."""
    argv = run.get("exec")
    if not isinstance(argv, list) or not argv or not all(isinstance(arg, str) for arg in argv):
        argv = list(DEFAULT_ARGV)
    argv = list(argv)
    if argv[0] == "{python}":
        argv[0] = sys.executable
    return argv


def descendants(pid: int) -> List[Tuple[int, int, str]]:
    """``(pid, pgid, start time)`` of every live descendant of ``pid``."""
    children: Dict[int, List[Tuple[int, int, str]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat and stat[0] != "Z":
                children.setdefault(int(stat[1]), []).append((int(entry), int(stat[2]), stat[19]))
    found, frontier = [], [pid]
    while frontier:
        for child in children.get(frontier.pop(), ()):
            found.append(child)
            frontier.append(child[0])
    return found


def console_log_path(storage_dir: str, rev: str, name: str) -> str:
    """Where the built-in runtime appends container ``name``'s output."""
    return os.path.join(os.path.abspath(storage_dir), "logs", rev, name, "console.log")


class ProcessRuntime:
    """Every container is a supervised process group (``core.supervisor``).

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
        )

    def stop(self, handle, timeout: float) -> None:
        # NOTE: a process that left the container's group (setsid) is found
        # through its ancestry while the leader still lives, and killed too.
        strays = [(pid, started) for pid, pgid, started in descendants(handle.pid) if pgid != handle.pid]
        self._core.supervisor.stop(handle, timeout)
        for pid, started in strays:
            if start_time(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def pid(self, handle) -> int:
        return handle.pid

    def poll(self, handle) -> Optional[int]:
        code = handle.poll()
        if code is not None:
            self._core.supervisor.reaped(handle)
        return code


@hookimpl(trylast=True)
def pvcore_container_runtime(core):
    return ProcessRuntime(core)
