"""pv_containers: the container engine of the running revision.

Owns the running revision's groups and containers, their status machine,
restart policies and auto-recovery (docs/protocol.md §D4), and serves
``GET /containers``, ``PUT /containers/{name}`` and the console logs,
``GET /_pvcore/logs/{name}``. Containers run through the
runtime ``pv_containers_runtime`` returns; the built-in one
(:mod:`pv_containers.runtime`) runs each as a supervised process group. One
engine service drives everything; the contract other plugins use is in
:mod:`pv_containers.hookspecs`. Status changes are published as
``container.status`` and ``revision.status`` events.
"""
from __future__ import annotations

import os
import shutil
import time

import structlog

from pvcore import hookimpl
from pvcore.app import StashKey
from pvcore.handoff import HandOff
from pvcore.ownership import MetaFact, Owns
from pvcore.services import LoopService
from pvcore.settings import Setting

from .engine import Engine
from .logs import ContainerLog
from .resources import ContainerControl, ContainerList
from .runtime import pv_containers_runtime  # noqa: F401  (the trylast default runtime)

log = structlog.get_logger(__name__)

ENGINE: StashKey[Engine] = StashKey()
#: Deletes a collected revision's logs and disks, off the publisher's thread.
COLLECTOR: StashKey[HandOff] = StashKey()


@hookimpl
def pvcore_declare_ownership():
    # NOTE: a runtime (the built-in process runtime, pv_lxc) writes these on
    # the engine's behalf, for the container the engine hands it.
    return Owns(
        paths={"<storage>/disks/": "containers' storage by persistence: `rev/<rev>/<c>/` (revision; the "
                                   "process runtime's working dir), `perm/<c>/` (permanent); deleted with "
                                   "its revision when pv_steps announces `revision.collected`",
               "<storage>/logs/<rev>/": "`<c>/console.log`: each container's console, per revision (written "
                                        "through the core's log pump, budget `log_dir_maxsize`); deleted "
                                        "with its revision",
               "<run>/containers/": "the process runtime's per-start area of each container: `<c>/boot`, "
                                    "`<c>/volumes`, `<c>/config`"},
        device_meta={"pantavisor.status": MetaFact("revision.status", "status",
                                                   help="the running revision's status")},
        events={"container.status": "a container's status changed (data: old, new, rev)",
                "group.status": "a group's status changed (data: old, new)",
                "revision.status": "the running revision's aggregate status changed (data: status)"},
        listens=("revision.collected",),
        caller_events=("container.status",),
    )


class EngineService(LoopService):
    """Runs :meth:`Engine.step` every ``containers_interval`` seconds, and at once on events.

    Stopping it stops every container in reverse group order.
    """

    def __init__(self, engine: Engine, interval: float):
        super().__init__("containers", engine.step, interval, priority=60)
        self._engine = engine

    def start(self) -> None:
        self._engine.runtime  # noqa: B018  (an unknown runtime fails the start, naming it)
        self._engine.wake = self.wake
        self._engine.open()
        if not self._engine.loaded:
            # Nothing runs this boot (its revision was refused, docs/protocol.md
            # §D12.1): device-meta must not keep the status of an earlier boot.
            self._engine.publish_idle()
        super().start()

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self._engine.close()


@hookimpl
def pvcore_addhooks(pluginmanager):
    from pv_containers import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def pvcore_declare_settings():
    return [
        Setting("containers_interval", float, 0.1,
                "Seconds between two rounds of the container engine (status machine, recovery)."),
        Setting("container_runtime", str, "lxc",
                "Container runtime: lxc (real LXC containers from the revision's rootfs, as on a device; the "
                "pv_lxc plugin, root) or process (each container a supervised process group; no root needed).",
                demo="process"),
        Setting("containers_clock", callable, time.monotonic,
                "Monotonic clock of the container engine (recovery delays, group timeouts); injected by tests."),
    ]


@hookimpl
def pvcore_startup(core):
    core.stash[ENGINE] = Engine(core, clock=core.settings.get("containers_clock"))
    storage = core.settings.storage_dir
    core.stash[COLLECTOR] = HandOff("containers.collector", lambda rev: forget_revision(storage, rev))


@hookimpl
def pvcore_services(core):
    return [core.stash[COLLECTOR], EngineService(core.stash[ENGINE], core.settings.get("containers_interval"))]


def forget_revision(storage_dir: str, rev: str) -> None:
    """Delete what the engine's runtimes kept for revision ``rev``: its console
    logs and its ``revision`` disks (on the collector's thread)."""
    if not rev or rev.startswith("/") or ".." in rev.split("/"):
        return
    for path in (os.path.join(storage_dir, "logs", rev), os.path.join(storage_dir, "disks", "rev", rev)):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
    log.info("revision_data_removed", rev=rev)


@hookimpl
def pvcore_event(core, event):
    # Only revision.collected (see the declaration): pv_steps removed a revision.
    core.stash[COLLECTOR].put(event.subject)


@hookimpl
def pvcore_routes(core):
    engine = core.stash[ENGINE]
    return [
        ("/containers", ContainerList(engine)),
        ("/containers/{name}", ContainerControl(engine)),
        ("/_pvcore/logs/{name}", ContainerLog(core, engine)),
    ]


@hookimpl(tryfirst=True)
def pvcore_identify_caller(core, pid):
    return core.stash[ENGINE].identify(pid)


@hookimpl
def pvcore_caller_cgroups(core):
    return core.stash[ENGINE].cgroups()


@hookimpl
def pvcore_caller_leaders(core):
    pids = core.stash[ENGINE].pids() or {}
    return {name: pid for name, pid in pids.items() if pid > 0}


@hookimpl
def pvcore_caller_roles(core, name):
    return core.stash[ENGINE].roles(name)


@hookimpl
def pv_containers_pids(core):
    return core.stash[ENGINE].pids()


@hookimpl
def pv_containers_signal(core, name, type, payload):
    return core.stash[ENGINE].signal(name, type)


@hookimpl
def pv_containers_groups(core):
    return core.stash[ENGINE].group_list()


@hookimpl
def pv_containers_run_revision(core, revision, only_changed, timeout):
    return core.stash[ENGINE].run_revision(revision, only_changed=only_changed, timeout=timeout)


@hookimpl
def pv_containers_load(core, revision, goals_timeout):
    return core.stash[ENGINE].load(revision, goals_timeout)


@hookimpl
def pv_containers_stability_pending(core):
    return core.stash[ENGINE].stability_pending()


@hookimpl
def pv_containers_stop(core, timeout):
    return core.stash[ENGINE].stop_all(timeout)
