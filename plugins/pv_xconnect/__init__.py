"""pv_xconnect: the service-mesh graph, its reconciler daemon and ``XCONNECT_GRAPH``.

``GET /xconnect-graph`` serves the running revision's service links
(docs/protocol.md §7.13). The reconciler, ``pv-xconnect``
(:mod:`pv_xconnect.xconnect_daemon`), is declared to the daemon supervisor
(``pv_daemons_declare``); the ``XCONNECT_GRAPH`` command and the end of
each revision transition ask it to reconcile at once (SIGUSR1).

The graph is computed on every request from the running revision's model
(``pv_steps_revision``, rev ``current``) and the containers' pids
(``pv_containers_pids``); see :mod:`pv_xconnect.graph`. The hosted D-Bus
(``system-bus`` provided by ``_pv_``) is not built in, so such requirements
link only to containers that export a service of that name.
"""
from __future__ import annotations

import os
import signal
import sys

import falcon

from pvcore import hookimpl
from pvcore.ownership import Owns
from pvcore.body import dumps
from pvcore.errors import PvError
from pvcore.services import DaemonSpec

from pv_xconnect.graph import build_graph


class XconnectGraph:
    """Links between consumers and providers of the running revision."""

    def __init__(self, core):
        self._core = core

    def on_get(self, req, resp):
        core = self._core
        revision = core.call("pv_steps_revision", rev="current")
        if revision is None:
            raise PvError("State not loaded yet", 500)
        pids = core.call("pv_containers_pids")
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(build_graph(revision, pids))


@hookimpl
def pvcore_routes(core):
    return [("/xconnect-graph", XconnectGraph(core))]


XCONNECT = "pv-xconnect"


@hookimpl
def pvcore_declare_ownership():
    return Owns(listens=("command.finished",))


# NOTE: the daemon table lists answers in registration order, trylast ones
# first: pv-xconnect heads it, as in upstream's table.
@hookimpl(optionalhook=True, trylast=True)
def pv_daemons_declare(core):
    argv = [sys.executable, "-m", "pv_xconnect.xconnect_daemon"]
    return [DaemonSpec(XCONNECT, argv, env={"PVCORE_CTRL_SOCKET": os.path.abspath(core.settings.socket_path)})]


def reconcile(core) -> None:
    """Ask the reconciler daemon to reconcile now rather than in 5 s."""
    core.call("pv_daemons_signal", name=XCONNECT, signum=signal.SIGUSR1)


@hookimpl(optionalhook=True)
def pv_commands_run(core, op, payload):
    if op != "XCONNECT_GRAPH":
        return None
    reconcile(core)
    return True


#: Commands after which the running revision's containers may be others.
_TRANSITIONS = ("LOCAL_RUN", "LOCAL_RUN_COMMIT", "TRY_ONCE", "LOCAL_APPLY", "MAKE_FACTORY")


@hookimpl
def pvcore_event(core, event):
    # A transition was carried out (or rolled back): the service graph is new.
    # NOTE: not on boot-time events: the daemon may still be starting, and a
    # SIGUSR1 before its handler is installed would kill it.
    if event.type == "command.finished" and event.subject in _TRANSITIONS:
        reconcile(core)
