"""pv_daemons: Pantavisor's internal daemons as supervised process groups.

Any plugin contributes daemons through ``pv_daemons_declare`` (a list of
:class:`pvcore.services.DaemonSpec`; the contract is in
:mod:`pv_daemons.hookspecs`); this plugin contributes ``ssh`` (started only
on request, e.g. by ``ENABLE_SSH``). They start with ``core.start()``,
are respawned with backoff when they crash, and are stopped with
``core.stop()``. Endpoints: ``GET /daemons``, ``PUT /daemons/{name}``
(docs/protocol.md §7.4). Each daemon's output goes to ``<storage>/logs/daemons/<name>.log``.

``hwrngd`` and ``pv-dbus`` of upstream's table are not part of the demo device.
"""
from __future__ import annotations

import os
import shlex
import sys

from pvcore import hookimpl
from pvcore.ownership import Owns
from pvcore.app import StashKey
from pvcore.services import DaemonSpec
from pvcore.settings import Setting

from pv_daemons.resources import DaemonItem, DaemonList
from pv_daemons.supervision import DaemonSupervisor, DaemonTable

TABLE = StashKey()
SSH = "ssh"


@hookimpl
def pvcore_declare_ownership():
    return Owns(
        paths={"<storage>/logs/daemons/": "`<name>.log`: each daemon's output"},
        events={"daemon.status": "a daemon's status changed (data: old, new, pid)"},
        listens=(),
    )


@hookimpl
def pvcore_declare_settings():
    return [
        Setting("ssh_command", str, "",
                "Command line of the ssh daemon started by ENABLE_SSH (e.g. 'dropbear -F -R'); empty runs a "
                "harmless placeholder process, as on the demo device."),
    ]


def _collect(core):
    def collect():
        # NOTE: pluggy answers most-recently-registered first; reverse it so
        # the table follows registration (declaration) order.
        specs = []
        for group in reversed(core.hook.pv_daemons_declare(core=core)):
            specs.extend(group or ())
        return specs

    return collect


@hookimpl
def pvcore_startup(core):
    core.stash[TABLE] = DaemonTable(
        _collect(core), core.supervisor,
        log_dir=os.path.join(core.settings.storage_dir, "logs", "daemons"),
        stop_timeout=core.settings.stop_timeout,
        publish=core.publish,
    )


@hookimpl
def pvcore_routes(core):
    table = core.stash[TABLE]
    return [("/daemons", DaemonList(table)), ("/daemons/{name}", DaemonItem(table))]


@hookimpl
def pvcore_services(core):
    return [DaemonSupervisor(core.stash[TABLE])]


@hookimpl
def pvcore_addhooks(pluginmanager):
    from pv_daemons import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def pv_daemons_declare(core):
    ssh = shlex.split(core.settings.get("ssh_command")) or [sys.executable, "-m", "pv_daemons.placeholder",
                                                           "--placeholder"]
    return [DaemonSpec(SSH, ssh, autostart=False)]


@hookimpl
def pv_daemons_control(core, name, action):
    return core.stash[TABLE].control(name, action)


@hookimpl
def pv_daemons_signal(core, name, signum):
    table = core.stash.get(TABLE)
    if table is None or table.get(name) is None:
        return None
    return table.signal(name, signum)
