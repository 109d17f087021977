"""``GET /daemons`` and ``PUT /daemons/{name}`` (docs/protocol.md §7.4)."""
from __future__ import annotations

import falcon

from pvcore.body import dumps, parse_json_object, read_small_body
from pvcore.errors import BadRequest, NotFound

from pv_daemons.supervision import ACTIONS, DaemonTable

BODY_LIMIT = 1024
INVALID_ACTION = "Invalid action. Use 'start', 'stop', or 'restart'"


class DaemonList:
    """Every daemon in declaration order: ``[{"name","pid","respawn"}]``."""

    def __init__(self, table: DaemonTable):
        self._table = table

    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(self._table.listing())


class DaemonItem:
    """``{"action":"stop|start|restart"}``, carried out before the 200.

    Unlike upstream, which answers 200 to a missing or unknown action, this
    answers 400 (docs/protocol.md §12.17) and does ``restart`` server-side.
    """

    def __init__(self, table: DaemonTable):
        self._table = table

    def on_put(self, req, resp, name):
        if self._table.get(name) is None:
            raise NotFound("Daemon not found")
        doc = parse_json_object(read_small_body(req, BODY_LIMIT, "No data"), "Invalid JSON")
        action = doc.get("action")
        if action not in ACTIONS:
            raise BadRequest(INVALID_ACTION)
        self._table.control(name, action)
        resp.content_type = falcon.MEDIA_JSON
