"""``GET /config`` and ``GET /config2`` (docs/protocol.md §7.12)."""
from __future__ import annotations

import falcon

from pvcore.body import dumps

from pv_config.state import Config
from pv_config.values import as_json, as_text

#: What a set secret looks like in listings (fixing docs/protocol.md §12.24).
MASK = "********"


class ConfigLegacy:
    """``GET /config``: alias → typed value, for entries that have an alias."""

    def __init__(self, config: Config):
        self._config = config

    def on_get(self, req, resp):
        body = {}
        for entry, value, _level in self._config.rows():
            if entry.alias:
                if entry.secret and value is not None:
                    value = MASK
                body[entry.alias] = as_json(entry.type, value)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(body)


class ConfigFull:
    """``GET /config2``: ``{"key","value","modified"}`` for every entry."""

    def __init__(self, config: Config):
        self._config = config

    def on_get(self, req, resp):
        body = []
        for entry, value, level in self._config.rows():
            if entry.secret and value is not None:
                value = MASK
            body.append({"key": entry.key, "value": as_text(entry.type, value), "modified": level})
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(body)
