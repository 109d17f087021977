"""``/user-meta`` and ``/device-meta``: list, put and delete (docs/protocol.md §7.10, §7.11)."""
from __future__ import annotations

import errno

import falcon
import structlog

from pvcore.body import read_small_body
from pvcore.errors import BadRequest, InsufficientStorage, NotFound, PvError

from pv_metadata.state import Kind, Metadata
from pv_metadata.store import MAX_VALUE, render_listing, valid_key

log = structlog.get_logger(__name__)


def _write(meta: Metadata, kind: Kind, key: str, value) -> bool:
    try:
        return meta.set(kind.name, key, value)
    except OSError as exc:
        log.error("meta_write_failed", kind=kind.name, key=key, error=str(exc))
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage() from None
        raise PvError(kind.bad_put, 500) from None


class MetaList:
    """``GET /user-meta``: the store as a JSON object, newest key first."""

    def __init__(self, meta: Metadata, kind: Kind):
        self._store = meta.stores[kind.name]

    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_JSON
        resp.data = render_listing(self._store.listing())


class MetaItem:
    """``PUT``/``DELETE /user-meta/{key}``: the body is the raw value."""

    def __init__(self, meta: Metadata, kind: Kind):
        self._meta = meta
        self._kind = kind

    def on_put(self, req, resp, key):
        kind = self._kind
        # NOTE: upstream rejects a missing or zero Content-Length up front, so
        # a chunked upload without one is refused too (docs/protocol.md §7.10).
        if not req.content_length or not valid_key(key):
            raise BadRequest(kind.bad_put)
        data = read_small_body(req, MAX_VALUE, kind.bad_put)
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(kind.bad_put) from None
        _write(self._meta, kind, key, value)
        resp.content_type = falcon.MEDIA_JSON

    def on_delete(self, req, resp, key):
        if not _write(self._meta, self._kind, key, None):
            raise NotFound(self._kind.missing)
        resp.content_type = falcon.MEDIA_JSON
