"""``GET /xconnect-graph``: the running revision's service links (contract §7.13).

The graph is computed on every request from the running revision's state
(``pvcore_revision_state``, rev ``current``) and the containers' pids
(``pvcore_container_pids``); see :mod:`pv_xconnect.graph`. The hosted D-Bus
(``system-bus`` provided by ``_pv_``) is not built in, so such requirements
link only to containers that export a service of that name.
"""
from __future__ import annotations

from collections.abc import Mapping

import falcon

from pvcore import hookimpl
from pvcore.body import dumps
from pvcore.errors import PvError

from pv_xconnect.graph import build_graph


class XconnectGraph:
    """Links between consumers and providers of the running revision."""

    def __init__(self, core):
        self._core = core

    def on_get(self, req, resp):
        core = self._core
        state = core.hook.pvcore_revision_state(core=core, rev="current")
        if not isinstance(state, Mapping):
            raise PvError("State not loaded yet", 500)
        pids = core.hook.pvcore_container_pids(core=core)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(build_graph(state, pids))


@hookimpl
def pvcore_routes(core):
    return [("/xconnect-graph", XconnectGraph(core))]
