"""pv_signal: ``POST /signal`` (docs/protocol.md §7.5), the only endpoint non-mgmt containers may call.

The signal is delivered to the engine through ``pv_containers_signal`` under
the caller's container name; the host (``_pv_``) is no container, so its
signals always fail, as upstream's do.
"""
from __future__ import annotations

import falcon

from pvcore import hookimpl
from pvcore.body import parse_json_object, read_small_body
from pvcore.errors import BadRequest, PvError

BODY_LIMIT = 4096
BAD_FORMAT = "Signal has bad format"
NOT_EXPECTED = "Signal not expected from this platform"


class Signal:
    """``{"type":"ready","payload":""}`` from a container whose status goal is READY."""

    mgmt = False

    def __init__(self, core):
        self._core = core

    def on_post(self, req, resp):
        core = self._core
        if core.call("pv_containers_groups") is None:
            raise PvError("State not loaded yet", 500)
        doc = parse_json_object(read_small_body(req, BODY_LIMIT, BAD_FORMAT), BAD_FORMAT)
        kind = doc.get("type")
        if not isinstance(kind, str):
            raise BadRequest(BAD_FORMAT)
        payload = doc.get("payload", "")
        caller = req.context.caller
        accepted = not caller.is_host and core.call(
            "pv_containers_signal", name=caller.name, type=kind, payload=payload if isinstance(payload, str) else str(payload))
        if accepted is not True:
            raise PvError(NOT_EXPECTED, 500)
        resp.status = 200
        resp.content_type = falcon.MEDIA_JSON


@hookimpl
def pvcore_routes(core):
    return [("/signal", Signal(core))]
