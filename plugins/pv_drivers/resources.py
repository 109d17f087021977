"""``/drivers`` endpoints (docs/protocol.md §7.15), scoped to the calling container."""
from __future__ import annotations

import falcon

from pvcore.body import drain, dumps
from pvcore.errors import BadRequest, NotFound

from pv_drivers.state import DriverState

RESERVED = ("load", "unload")


def _container(req):
    caller = req.context.caller
    return None if caller.is_host else caller.name


def _ok(resp):
    resp.status = 200
    resp.content_type = falcon.MEDIA_JSON


class DriverList:
    """``GET /drivers``: the caller's references with their status, or ``{}``.

    Two shapes, as upstream (docs/protocol.md §12.16): the literal object ``{}`` when
    the caller is the host or references no drivers, otherwise an array of
    ``{"name","type","status"}``.
    """

    def __init__(self, state: DriverState):
        self._state = state

    def on_get(self, req, resp):
        container = _container(req)
        entries = self._state.listing(container) if container else []
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(entries if entries else {})


class ManualDrivers:
    """``PUT /drivers/load`` / ``PUT /drivers/unload``: all of the caller's manual drivers."""

    def __init__(self, state: DriverState, action: str):
        self._state = state
        self._action = action

    def on_put(self, req, resp):
        drain(req)
        container = _container(req)
        if container:
            if self._action == "load":
                if not self._state.load_manual(container):
                    raise BadRequest("Error loading drivers")
            else:
                self._state.unload_manual(container)
        _ok(resp)


class OneDriver:
    """``PUT /drivers/{name}/load|unload``: one manual driver of the caller.

    A name the caller does not reference at all is 404 ``Driver not found``
    (upstream answers a silent 200); one it references as required/optional
    is left alone (200), as those are Pantavisor's to manage.
    """

    def __init__(self, state: DriverState, action: str):
        self._state = state
        self._action = action

    def on_put(self, req, resp, name):
        drain(req)
        if name in RESERVED:
            raise BadRequest("No driver name")
        container = _container(req)
        refs = self._state.references(container) if container else []
        kinds = {kind for alias, kind in refs if alias == name}
        if not kinds:
            raise NotFound("Driver not found")
        if "MANUAL" in kinds:
            if self._action == "load":
                if not self._state.load(name):
                    raise BadRequest("Error loading driver")
            else:
                self._state.unload(name)
        _ok(resp)
