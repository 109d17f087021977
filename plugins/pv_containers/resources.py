"""``GET /containers`` and ``PUT /containers/{name}`` (docs/protocol.md §7.1, §7.2)."""
from __future__ import annotations

import falcon

from pvcore.body import parse_json_object, read_small_body
from pvcore.errors import BadRequest, Forbidden, NotFound, PvError

BODY_LIMIT = 1024
ACTIONS = ("start", "stop", "restart")
NOT_LOADED = "State not loaded yet"


class ContainerList:
    """Every container of the running revision, in state order."""

    def __init__(self, engine):
        self._engine = engine

    def on_get(self, req, resp):
        body = self._engine.container_list_json()
        if body is None:
            raise PvError(NOT_LOADED, 500)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = body


class ContainerControl:
    """Start, stop or restart one ``container``-policy container; the engine does the work."""

    def __init__(self, engine):
        self._engine = engine

    def on_put(self, req, resp, name):
        engine = self._engine
        if not engine.loaded:
            raise PvError(NOT_LOADED, 500)
        container = engine.container(name)
        if container is None:
            raise NotFound("Container not found")
        if container.restart_policy != "container":
            raise Forbidden("Container has restart_policy 'system' and cannot be controlled via API")
        doc = parse_json_object(read_small_body(req, BODY_LIMIT, "No data"), "Invalid JSON")
        if "action" not in doc:
            raise BadRequest("Missing 'action' field")
        action = doc["action"]
        if action not in ACTIONS:
            raise BadRequest("Invalid action. Use 'start', 'stop', or 'restart'")
        engine.control(name, action)
        resp.status = 200
        resp.content_type = falcon.MEDIA_JSON
