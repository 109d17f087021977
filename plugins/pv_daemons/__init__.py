"""pv_daemons: Pantavisor's internal daemons as supervised process groups.

Any plugin contributes daemons through ``pvcore_daemons`` (a list of
:class:`pvcore.services.DaemonSpec`); this plugin contributes ``pv-xconnect``
(a real reconciler, :mod:`pv_daemons.xconnect_daemon`) and ``ssh`` (started
only on request, e.g. by ``ENABLE_SSH``). They start with ``core.start()``,
are respawned with backoff when they crash, and are stopped with
``core.stop()``. Endpoints: ``GET /daemons``, ``PUT /daemons/{name}``
(contract §7.4). Each daemon's output goes to ``<storage>/logs/daemons/<name>.log``.

``hwrngd`` and ``pv-dbus`` of upstream's table are not part of the demo device.
"""
from __future__ import annotations

import os
import shlex
import signal
import sys

from pvcore import hookimpl
from pvcore.app import StashKey
from pvcore.services import DaemonSpec
from pvcore.settings import Setting

from pv_daemons.resources import DaemonItem, DaemonList
from pv_daemons.supervision import DaemonSupervisor, DaemonTable

TABLE = StashKey()
XCONNECT = "pv-xconnect"
SSH = "ssh"


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
        for group in reversed(core.hook.pvcore_daemons(core=core)):
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
def pvcore_daemons(core):
    module = [sys.executable, "-m", "pv_daemons.xconnect_daemon"]
    ssh = shlex.split(core.settings.get("ssh_command")) or module + ["--placeholder"]
    return [
        DaemonSpec(XCONNECT, module, env={"PVCORE_CTRL_SOCKET": os.path.abspath(core.settings.socket_path)}),
        DaemonSpec(SSH, ssh, autostart=False),
    ]


@hookimpl
def pvcore_daemon_control(core, name, action):
    return core.stash[TABLE].control(name, action)


@hookimpl
def pvcore_xconnect_reconcile(core):
    core.stash[TABLE].signal(XCONNECT, signal.SIGUSR1)


@hookimpl
def pvcore_revision_changed(core, old, new, ok):
    # A new revision means a new service graph: reconcile now, not in 5 s.
    core.stash[TABLE].signal(XCONNECT, signal.SIGUSR1)
