"""pv_commands: ``POST /commands``, the single command slot, power and the device's mode.

The plugin owns the slot (docs/protocol.md §7.6): it parses and admits a
command, and a worker thread (:class:`pv_commands.worker.CommandWorker`)
carries out one command at a time. Power (reboot, poweroff, a held reboot)
and the remote/claimed mode are its own; every other op goes to the plugin
that owns the state it changes through ``pv_commands_run``
(:mod:`pv_commands.hookspecs`): revision transitions and GC to the owner of
revisions, ``UPDATE_METADATA`` to metadata, ``XCONNECT_GRAPH`` to xconnect.
The device's mode is published as ``commands.mode`` (``local``/``remote``),
whether it is claimed as ``commands.claimed`` (``1``/``0``), both when the
worker starts and on every change: they are the device-meta keys
``pantavisor.mode`` and ``pantahub.claimed``, which only pv_commands owns.

Settings: ``reboot_delay``, ``power_backend`` (``demo``/``system``),
``power_kill`` and ``claimed`` (see :data:`SETTINGS`).
"""
import os

import structlog

from pvcore import hookimpl
from pvcore.ownership import MetaFact, Owns
from pvcore.app import StashKey
from pvcore.errors import StartupError
from pvcore.settings import Setting

from pv_commands import device
from pv_commands.power import DemoPower, SystemPower
from pv_commands.resources import Commands
from pv_commands.state import CommandState
from pv_commands.worker import CommandWorker

log = structlog.get_logger(__name__)

STATE: StashKey[CommandState] = StashKey()
POWER: StashKey[object] = StashKey()


@hookimpl
def pvcore_declare_ownership():
    return Owns(
        device_meta={"pantavisor.mode": MetaFact("commands.mode", help="local or remote"),
                     "pantahub.claimed": MetaFact("commands.claimed", help="1 when the device is claimed")},
        events={"command.accepted": "a command took the slot (subject: op; data: payload)",
                "command.finished": "a command was carried out (subject: op; data: ok)",
                "commands.mode": "the device's mode (subject: local or remote), at start and on change",
                "commands.claimed": "whether the device is claimed (subject: 1 or 0), at start and on change"},
        listens=("container.status",),
    )

SETTINGS = (
    Setting("reboot_delay", float, 0.0,
            "Seconds REBOOT_DEVICE is held before the reboot happens (0 = at once); "
            "DEFER_REBOOT <seconds> pushes a held reboot back."),
    Setting("power_backend", str, "system",
            "How REBOOT_DEVICE/POWEROFF_DEVICE act when no plugin offers a power backend: "
            "system (the init system's reboot/poweroff, as a device does) or demo (restart/stop pvcore "
            "itself).", demo="demo"),
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
    device.migrate_marker(core)
    core.stash[STATE] = CommandState(update_ongoing=lambda: bool(core.hook.pv_commands_update_ongoing(core=core)))


@hookimpl
def pvcore_routes(core):
    return [("/commands", Commands(core, core.stash[STATE]))]


@hookimpl
def pvcore_services(core):
    return [CommandWorker(core, core.stash[STATE])]


@hookimpl
def pvcore_event(core, event):
    # A platform container dead for good tears a real device down, as upstream
    # does: reboot (docs/protocol.md §D5.3). While an update is being tested
    # its owner rolls back instead; the demo device only shows the failure.
    if event.type != "container.status" or not event.data.get("platform_failed"):
        return
    cstate = core.stash.get(STATE)
    if cstate is None or cstate.update_ongoing():
        return
    if isinstance(core.hook.pv_commands_power_backend(core=core), DemoPower):
        log.warning("platform_failed_no_reboot", container=event.subject, reason="demo device")
        return
    log.error("platform_failed_reboot", container=event.subject)
    cstate.schedule_reboot(0.0, f"Platform container {event.subject} failed")


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
