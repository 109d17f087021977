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

A caller other than the host gets at most :data:`LINES_PER_SECOND` access
lines a second: a
container sending ``POST /signal`` in a loop wrote 1,200 info lines a second,
which a journal's rate limit would pay for with pvcore's own warnings. The
lines over the budget are counted and said in one ``access_lines_suppressed``
warning (caller, count) with the caller's next line after that second.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Dict, List

from gunicorn.glogging import Logger

from pvcore.caller import HOST
from pvcore.log import LOG_FIELDS

_READS = frozenset(("GET", "HEAD"))
#: access lines a caller may cause in a second (see the module docstring).
LINES_PER_SECOND = 20


class LineBudget:
    """At most ``per_second`` lines per key and second; what was held back, said once."""

    def __init__(self, per_second: int = LINES_PER_SECOND):
        self.per_second = per_second
        self._lock = threading.Lock()
        self._windows: Dict[object, List] = {}  # key -> [second, lines, held back]

    def take(self, key) -> tuple:
        """``(may_log, held_back_before)``: whether this line fits, and how many lines
        of ``key``'s earlier seconds were held back (to be said now, once)."""
        second = int(time.monotonic())
        with self._lock:
            window = self._windows.get(key)
            held = 0
            if window is None or window[0] != second:
                held = window[2] if window is not None else 0
                if len(self._windows) > 4096:
                    self._windows.clear()
                window = self._windows[key] = [second, 0, 0]
            if window[1] >= self.per_second:
                window[2] += 1
                return False, held
            window[1] += 1
            return True, held


def access_level(method: str, status: int) -> int:
    """The level of a request's access event (see the module docstring)."""
    if status >= 500:
        return logging.WARNING
    if method in _READS:
        return logging.DEBUG
    return logging.INFO


class AccessLogger(Logger):
    """gunicorn's logger, with the access line as an ``http_request`` event."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.budget = LineBudget()

    def access(self, resp, req, environ, request_time):
        try:
            status = _status_code(resp)
            method = getattr(req, "method", None) or "-"
            level = access_level(method, status)
            if not self.access_log.isEnabledFor(level):
                return
            known = environ.get(LOG_FIELDS) or {}
            caller = known.get("caller")
            fits, held = (True, 0) if caller == HOST else self.budget.take(caller)
            if held:
                self.access_log.warning("access_lines_suppressed", extra={"caller": known.get("caller"),
                                                                          "lines": held})
            if not fits:
                return
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
