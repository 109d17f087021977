"""``/objects`` and ``/objects/{sha}`` (docs/protocol.md §7.8)."""
from __future__ import annotations

import falcon
import structlog

from pvcore.body import body_stream, drain
from pvcore.errors import BadRequest, PvError

from pv_objects.store import ObjectStore, valid_sha

log = structlog.get_logger(__name__)

BAD_NAME = "Request has bad object name"


class ObjectList:
    """``GET /objects``: every object as ``{"sha256", "size"}``, size a string (as upstream)."""

    def __init__(self, store: ObjectStore):
        self._store = store
        self._rendered = (None, b"")

    def on_get(self, req, resp):
        listing = self._store.listing()
        # PERF: the store hands back the same list while nothing changed;
        # render it once. (A tuple swap is atomic: threads may share it.)
        last, body = self._rendered
        if listing is not last:
            # Names are 64 hex digits and sizes integers: nothing to escape.
            body = ("[" + ",".join('{"sha256":"%s","size":"%d"}' % item for item in listing) + "]").encode()
            self._rendered = (listing, body)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = body


class ObjectItem:
    """``GET /objects/{sha}`` streams an object; ``PUT`` uploads one."""

    def __init__(self, store: ObjectStore):
        self._store = store

    def on_get(self, req, resp, sha):
        if not valid_sha(sha):
            raise BadRequest(BAD_NAME)
        try:
            fh = self._store.open(sha)
        except OSError:
            log.exception("object_open_failed", sha=sha)
            raise PvError("Object allocation error", 500) from None
        if fh is None:
            # NOTE: upstream answers a missing object with 400, not 404 (docs/protocol.md §12.5).
            raise BadRequest(BAD_NAME)
        resp.content_type = "application/octet-stream"
        # No Content-Length: gunicorn sends chunked on HTTP/1.1, close-delimited
        # on 1.0. PERF: a file object reaches gunicorn as wsgi.file_wrapper,
        # which sendfile()s it (as one chunk on 1.1) instead of copying it
        # through Python a piece at a time.
        resp.stream = fh

    def on_put(self, req, resp, sha):
        if not valid_sha(sha):
            raise BadRequest(BAD_NAME)
        stored = self._store.put(sha, body_stream(req), req.content_length)
        log.info("object_uploaded" if stored else "object_already_present", sha=sha)
        resp.content_type = falcon.MEDIA_JSON
