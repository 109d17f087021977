"""pv_groups: ``GET /groups`` (docs/protocol.md §7.3), rendered by the engine through ``pv_containers_groups``."""
from __future__ import annotations

import falcon

from pvcore import hookimpl
from pvcore.body import dumps
from pvcore.errors import PvError


class GroupList:
    """The running revision's groups in start order, with their aggregate status."""

    def __init__(self, core):
        self._core = core

    def on_get(self, req, resp):
        groups = self._core.call("pv_containers_groups")
        if groups is None:
            raise PvError("State not loaded yet", 500)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(list(groups))


@hookimpl
def pvcore_routes(core):
    return [("/groups", GroupList(core))]
