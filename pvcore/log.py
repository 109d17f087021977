"""Logging: one JSON stream for pvcore's events and gunicorn's own loggers.

gunicorn's ``gunicorn.error``/``gunicorn.access`` are stdlib loggers, so
everything goes through stdlib ``logging`` with structlog's
``ProcessorFormatter`` on a single stderr handler.

Every event logged while a request is served carries that request's fields
(``request_id``, ``method``, ``path``, then ``caller``): the app's middleware
hands them to :func:`bind_request` and :func:`add_request_fields` adds them.
The access line itself is :mod:`pvcore.accesslog`.
"""
from __future__ import annotations

import logging
import logging.config
import os
import sys
from contextvars import ContextVar
from typing import Any, Dict, Optional

import structlog

# PERF: one context variable holding the request's fields, set once per
# request and read only when something is logged. structlog's contextvars
# (clear, then bind key by key) cost several µs on every request, logged or
# not (docs/plugins.md, "Logging").
#: ``environ`` key where the app leaves the request's fields for gunicorn's
#: access line, written after the app returned (:mod:`pvcore.accesslog`).
LOG_FIELDS = "pvcore.log_fields"

_REQUEST: ContextVar[Optional[Dict[str, Any]]] = ContextVar("pvcore_request", default=None)


def bind_request(fields: Dict[str, Any]) -> None:
    """Make ``fields`` part of every event logged by this thread until :func:`unbind_request`.

    The dict is kept, not copied: keys added to it later (the caller, once
    identified) show up in later events too.
    """
    _REQUEST.set(fields)


def unbind_request() -> None:
    """The request is over (gunicorn's ``post_request``): stop adding its fields."""
    _REQUEST.set(None)


def add_request_fields(logger, method_name: str, event_dict: Dict[str, Any]) -> Dict[str, Any]:
    """structlog processor: the current request's fields, unless the event has its own."""
    fields = _REQUEST.get()
    if fields:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
    return event_dict


_SHARED = [
    add_request_fields,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


#: syslog priorities of stdlib levels, highest level first, as journald reads
#: them from a ``<N>`` prefix; anything below DEBUG is debug too.
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def journal_stream(stream=None, environ=None) -> bool:
    """Whether ``stream`` (stderr) is connected to the systemd journal.

    systemd sets ``JOURNAL_STREAM=<device>:<inode>`` for a service whose
    stdout/stderr go to the journal; a child whose stderr was redirected
    elsewhere inherits the variable, so the descriptor itself must match.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        st = os.fstat((sys.stderr if stream is None else stream).fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):
        return False


class StderrHandler(logging.StreamHandler):
    """pvcore's one log handler: stderr, one rendered line per event.

    When stderr is the journal (:func:`journal_stream`), each line starts
    with its syslog priority, ``<3>`` for an error: journald strips the
    prefix and files the line at that priority, so ``journalctl -p err``
    finds pvcore's errors while the message stays the JSON line other
    collectors parse (docs/deploy.md, "Logs").
    """

    def __init__(self, stream=None):
        super().__init__(stream)
        self.journal = journal_stream(self.stream)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if not self.journal:
            return line
        priority = next((p for level, p in _PRIORITY if record.levelno >= level), 7)
        return f"<{priority}>{line}"


def _use_json(fmt: str) -> bool:
    if fmt == "json":
        return True
    if fmt == "console":
        return False
    return not sys.stderr.isatty()


def logconfig_dict(fmt: str = "auto", level: str = "info") -> Dict[str, Any]:
    """A ``logging.config.dictConfig`` dict; gunicorn takes it as ``logconfig_dict``.

    :param fmt: ``json``, ``console`` or ``auto`` (console on a tty).
    """
    renderer = structlog.processors.JSONRenderer() if _use_json(fmt) else structlog.dev.ConsoleRenderer()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structlog": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.dict_tracebacks,
                    renderer,
                ],
                "foreign_pre_chain": _SHARED + [structlog.stdlib.ExtraAdder()],
            }
        },
        "handlers": {
            "stderr": {"class": "pvcore.log.StderrHandler", "formatter": "structlog", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            # NOTE: no handlers of their own: they propagate to root, so
            # nothing is printed twice.
            "gunicorn.error": {"handlers": [], "propagate": True, "level": "INFO"},
            # The access logger follows the configured level: reads are
            # logged at debug (pvcore/accesslog.py).
            "gunicorn.access": {"handlers": [], "propagate": True, "level": level.upper()},
        },
    }


def configure_structlog() -> None:
    """Route structlog through stdlib logging. Called by ``pvcore.wsgi``, never by tests."""
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_SHARED, structlog.processors.StackInfoRenderer(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """Both halves at once, for processes gunicorn does not configure (CLI, daemons)."""
    logging.config.dictConfig(logconfig_dict(fmt, level))
    configure_structlog()
