"""pv_commands: ``POST /commands``, the single command slot and revision transitions.

The plugin owns the slot (contract §7.6) and the update progress of the
transitions it drives (device-model §3); the work itself is done by other
plugins through their contracts: storage (``pv_steps_revision_state``,
``pv_steps_set_running_revision``, ``pv_steps_commit_revision`` …), the engine
(``pv_containers_run_revision``, ``pv_containers_stop``), daemons
(``pv_daemons_control``) and config. A worker thread
(:class:`pv_commands.worker.CommandWorker`) carries out one command at a
time; an op pv_commands does not own goes to its owner through
``pv_commands_run`` (:mod:`pv_commands.hookspecs`). A container of a
revision being tested that dies on its own (a ``container.status`` event)
fails the transition, which is then rolled back. The device's mode is
published as ``commands.mode`` (``local``/``remote``) and an unclaim as
``commands.unclaimed``.

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
def pvcore_addhooks(pluginmanager):
    from pv_commands import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


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


@hookimpl(optionalhook=True)
def pv_steps_revisions_in_use(core):
    return core.stash[STATE].revisions_in_use()


@hookimpl(trylast=True)
def pv_commands_power_backend(core):
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
def pvcore_event(core, event):
    # A container of the revision being tested died without recovery: that
    # revision failed (device-model §3.2 failure edges); the worker rolls back.
    if event.type != "container.status":
        return
    old, new = event.data.get("old"), event.data.get("new")
    cstate = core.stash.get(STATE)
    if new == "STOPPED" and old in _UP and cstate is not None and cstate.fail_testing(event.subject, NOT_STARTED):
        log.error("container_died_while_testing", container=event.subject, old=old)
