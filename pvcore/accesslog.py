"""gunicorn's access log as pvcore events: one ``http_request`` event with fields.

``logger_class = "pvcore.accesslog.AccessLogger"`` (``pvcore/gunicorn_conf.py``)
replaces gunicorn's Apache-style line with ``method``, ``path``, ``status``,
``bytes``, ``duration_ms``, ``caller`` and ``request_id``.

Routine reads are not worth a line on a device's flash: a container polling
``GET /containers``, or pv-xconnect's ``GET /xconnect-graph`` every 5 s, would
write one forever. So the level says what happened (docs/plugins.md, "Logging"):

- ``GET``/``HEAD`` answered below 500: ``debug`` (shown with ``PVCORE_LOG_LEVEL=debug``);
- any other method (a change was asked for) below 500: ``info``;
- any 5xx: ``warning``.

An event below the configured level costs one level check and nothing else.
"""
from __future__ import annotations

import logging
import traceback

from gunicorn.glogging import Logger

from pvcore.log import LOG_FIELDS

_READS = frozenset(("GET", "HEAD"))


def access_level(method: str, status: int) -> int:
    """The level of a request's access event (see the module docstring)."""
    if status >= 500:
        return logging.WARNING
    if method in _READS:
        return logging.DEBUG
    return logging.INFO


class AccessLogger(Logger):
    """gunicorn's logger, with the access line as an ``http_request`` event."""

    def access(self, resp, req, environ, request_time):
        try:
            status = _status_code(resp)
            method = getattr(req, "method", None) or "-"
            level = access_level(method, status)
            if not self.access_log.isEnabledFor(level):
                return
            known = environ.get(LOG_FIELDS) or {}
            self.access_log.log(level, "http_request", extra={
                "method": method,
                "path": getattr(req, "path", None),
                "status": status,
                "bytes": resp.sent,
                "duration_ms": round(request_time.total_seconds() * 1000, 3),
                "caller": known.get("caller"),
                "request_id": known.get("request_id"),
            })
        except Exception:
            # NOTE: gunicorn also calls this while answering a malformed
            # request; a logging problem must never cost the client its reply.
            self.error(traceback.format_exc())


def _status_code(resp) -> int:
    code = getattr(resp, "status_code", None)  # set by start_response only
    if code is None:
        try:
            code = int(str(resp.status).split(None, 1)[0])
        except (ValueError, IndexError):
            code = 0
    return code
