"""pv_drivers: kernel driver aliases from the BSP, loaded per container.

The running revision's ``bsp/drivers.json`` maps aliases to module lists;
containers reference aliases in their
``run.json`` as ``required``/``optional`` (loaded by
``pv_containers_starting``; a failing required one aborts the start) or
``manual`` (loaded on request through the endpoints).

Endpoints (docs/protocol.md §7.15), all scoped to the calling container:

* ``GET /drivers`` → ``[{"name","type","status"}]`` (``type`` REQUIRED,
  OPTIONAL or MANUAL; ``status`` LOADED, UNLOADED or UNKNOWN when the BSP
  lacks the alias), **or the literal object** ``{}`` when the caller is the
  host ``_pv_`` or references no drivers. Both shapes are upstream's and kept
  for client compatibility.
* ``PUT /drivers/load|unload`` → every manual driver of the caller (200 when
  there is nothing to do; a failed load is 400 ``Error loading drivers``).
* ``PUT /drivers/{name}/load|unload`` → that manual driver; ``name`` not
  referenced by the caller → 404 ``Driver not found``; ``load``/``unload`` as
  name → 400 ``No driver name``; failed load → 400 ``Error loading driver``.

Modules are loaded by the ``pv_drivers_loader`` loader: this plugin's
``trylast`` default is ``modprobe`` when the ``driver_loader`` setting is
``modprobe``, else a dry-run recorder writing ``<run_dir>/drivers-dryrun.log``
(the demo device's default).

Both the manifest and the references are read from the running revision's
model (``pv_steps_revision``: ``driver_aliases(fitconfig)``, each container's
``drivers``); :mod:`pv_drivers.manifest` only expands module strings.
"""
from __future__ import annotations

import os

from pvcore import hookimpl
from pvcore.ownership import Owns
from pvcore.app import StashKey
from pvcore.settings import Setting

from pv_drivers.loaders import DryRunLoader, ModprobeLoader, run_command
from pv_drivers.resources import DriverList, ManualDrivers, OneDriver
from pv_drivers.state import DriverLoadError, DriverState

STATE = StashKey()
DRY_RUN = StashKey()


@hookimpl
def pvcore_declare_ownership():
    return Owns(
        paths={"<run>/drivers-dryrun.log": "the modprobe calls the dry-run loader recorded (demo device)"},
        events={"driver.status": "a driver alias was loaded or unloaded (data: old, new)"},
        listens=(),
    )

__all__ = ["DriverLoadError"]


@hookimpl
def pvcore_addhooks(pluginmanager):
    from pv_drivers import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def pvcore_declare_settings():
    return [
        Setting("driver_loader", str, "modprobe",
                "How drivers are loaded: 'modprobe' runs modprobe/modprobe -r; 'dryrun' (the demo device) "
                "only records the calls in <run_dir>/drivers-dryrun.log.", demo="dryrun"),
        Setting("driver_fitconfig", str, "",
                "The FIT configuration name whose 'fitconfig:<name>' section of bsp/drivers.json applies "
                "besides 'all' (PV_BOOTLOADER_FITCONFIG upstream)."),
        Setting("modprobe_runner", callable, run_command,
                "Function(argv) -> exit status that runs modprobe; injected by tests."),
    ]


def _fitconfig(core):
    def fitconfig():
        name = core.settings.get("driver_fitconfig")
        if not name:
            value = core.call("pv_config_get", key="PV_BOOTLOADER_FITCONFIG")
            name = value if isinstance(value, str) else ""
        return name

    return fitconfig


@hookimpl
def pvcore_startup(core):
    core.stash[DRY_RUN] = DryRunLoader(os.path.join(core.settings.run_dir, "drivers-dryrun.log"))
    core.stash[STATE] = DriverState(
        revision=lambda: core.call("pv_steps_revision", rev="current"),
        user_meta=lambda: core.call("pv_metadata_user"),
        loader=lambda: core.hook.pv_drivers_loader(core=core),
        fitconfig=_fitconfig(core),
        publish=core.publish,
    )


@hookimpl
def pvcore_routes(core):
    state = core.stash[STATE]
    return [
        ("/drivers", DriverList(state)),
        ("/drivers/load", ManualDrivers(state, "load")),
        ("/drivers/unload", ManualDrivers(state, "unload")),
        ("/drivers/{name}/load", OneDriver(state, "load")),
        ("/drivers/{name}/unload", OneDriver(state, "unload")),
    ]


@hookimpl(trylast=True)
def pv_drivers_loader(core):
    if core.settings.get("driver_loader") == "modprobe":
        return ModprobeLoader(core.settings.get("modprobe_runner"))
    return core.stash[DRY_RUN]


@hookimpl(optionalhook=True)
def pv_containers_starting(core, name, container):
    core.stash[STATE].container_starting(name, container.drivers)
