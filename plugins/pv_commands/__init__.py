"""pv_commands: ``POST /commands``, the single command slot and revision transitions.

The plugin owns the slot (contract §7.6) and the update progress of the
transitions it drives (device-model §3); the work itself is done by other
plugins through hooks: storage (``pvcore_revision_state``,
``pvcore_set_running_revision``, ``pvcore_commit_revision`` …), the engine
(``pvcore_run_revision``, ``pvcore_stop_containers``), daemons
(``pvcore_daemon_control``), config and metadata. A worker thread
(:class:`pv_commands.worker.CommandWorker`) carries out one command at a
time; every op also fires ``pvcore_command``. A container of a revision
being tested that dies on its own (``pvcore_container_status_changed``) fails
the transition, which is then rolled back.

Settings: ``update_goals_timeout``, ``update_commit_delay``,
``reboot_delay``, ``power_backend`` (``demo``/``system``), ``power_kill``
and ``claimed`` (see :data:`SETTINGS`).
"""
import os

import structlog

from pvcore import hookimpl
from pvcore.app import StashKey
from pvcore.errors import StartupError
from pvcore.settings import Setting

from pv_commands.power import DemoPower, SystemPower
from pv_commands.resources import Commands
from pv_commands.state import CommandState
from pv_commands.transition import NOT_STARTED
from pv_commands.worker import CommandWorker

log = structlog.get_logger(__name__)

STATE: StashKey[CommandState] = StashKey()
POWER: StashKey[object] = StashKey()

SETTINGS = (
    Setting("update_goals_timeout", float, 60.0,
            "Seconds a revision transition waits for every container to reach its status goal "
            "before rolling back (upstream PV_UPDATER_GOALS_TIMEOUT)."),
    Setting("update_commit_delay", float, 2.0,
            "Seconds a transitioned revision stays TESTING before it is final (UPDATED or DONE); "
            "upstream's PV_UPDATER_COMMIT_DELAY is 25, the demo device uses 2."),
    Setting("reboot_delay", float, 0.0,
            "Seconds REBOOT_DEVICE is held before the reboot happens (0 = at once); "
            "DEFER_REBOOT <seconds> pushes a held reboot back."),
    Setting("power_backend", str, "demo",
            "How REBOOT_DEVICE/POWEROFF_DEVICE act when no plugin offers a power backend: "
            "demo (restart/stop pvcore itself) or system (run reboot/poweroff)."),
    Setting("power_kill", callable, os.kill,
            "Function(pid, signum) the demo power backend signals gunicorn with; injected by tests."),
    Setting("claimed", bool, False,
            "Whether the device counts as claimed (MAKE_FACTORY refused, UNCLAIM does something); "
            "there is no Hub here, so the demo device is unclaimed."),
)


@hookimpl
def pvcore_declare_settings():
    return SETTINGS


POWER_BACKENDS = ("demo", "system")


@hookimpl
def pvcore_startup(core):
    if core.settings.get("power_backend") not in POWER_BACKENDS:
        raise StartupError(f"power_backend must be one of {', '.join(POWER_BACKENDS)}")
    core.stash[STATE] = CommandState()


@hookimpl
def pvcore_routes(core):
    return [("/commands", Commands(core, core.stash[STATE]))]


@hookimpl
def pvcore_services(core):
    return [CommandWorker(core, core.stash[STATE])]


@hookimpl
def pvcore_revisions_in_use(core):
    return core.stash[STATE].revisions_in_use()


@hookimpl(trylast=True)
def pvcore_power_backend(core):
    backend = core.stash.get(POWER)
    if backend is None:
        kind = core.settings.get("power_backend")
        if kind == "system":
            backend = SystemPower(core)
        else:
            backend = DemoPower(core, kill=core.settings.get("power_kill"))
        core.stash[POWER] = backend
    return backend


#: Statuses a container leaves when it dies on its own (a stop goes through STOPPING).
_UP = ("STARTING", "STARTED", "READY")


@hookimpl
def pvcore_container_status_changed(core, name, old, new):
    # A container of the revision being tested died without recovery: that
    # revision failed (device-model §3.2 failure edges); the worker rolls back.
    if new == "STOPPED" and old in _UP and core.stash[STATE].fail_testing(name, NOT_STARTED):
        log.error("container_died_while_testing", container=name, old=old)
