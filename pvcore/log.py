"""Logging: one JSON stream for pvcore's events and gunicorn's own loggers.

gunicorn's ``gunicorn.error``/``gunicorn.access`` are stdlib loggers, so
everything goes through stdlib ``logging`` with structlog's
``ProcessorFormatter`` on a single stderr handler (style-anchors §7).
"""
from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any, Dict

import structlog

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


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
            "stderr": {"class": "logging.StreamHandler", "formatter": "structlog", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            # NOTE: no handlers of their own: they propagate to root, so
            # nothing is printed twice.
            "gunicorn.error": {"handlers": [], "propagate": True, "level": "INFO"},
            "gunicorn.access": {"handlers": [], "propagate": True, "level": "INFO"},
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
