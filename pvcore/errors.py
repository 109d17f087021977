"""The error model: raise one of these from a resource; the core renders it.

Every error reaches the client as the contract's compact body
``{"Error":"<message>"}`` with ``Content-Type: application/json``
(see :func:`pvcore.app.render_error`).
"""
from __future__ import annotations

from typing import Mapping, Optional

#: Messages several plugins share (docs/protocol.md §5, §12.1).
NO_SPACE = "Not enough disk space available"


class StartupError(Exception):
    """The app cannot be built (route clash, unknown hook, bad setting).

    Shown to the operator as one line, without a traceback."""


class PvError(Exception):
    """An answer other than 200: ``status`` and the ``message`` clients see.

    :param message: the text of ``{"Error": ...}``.
    :param status: HTTP status code; subclasses fix a default.
    :param headers: extra response headers (e.g. ``Retry-After``).
    """

    status = 500

    def __init__(self, message: str, status: Optional[int] = None, headers: Optional[Mapping[str, str]] = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})


class BadRequest(PvError):
    """400: malformed or invalid input."""

    status = 400


class Forbidden(PvError):
    """403: the caller may not do this."""

    status = 403


class NotFound(PvError):
    """404: the named thing does not exist."""

    status = 404


class Conflict(PvError):
    """409: not possible in the device's current mode."""

    status = 409


class Unprocessable(PvError):
    """422: well-formed but invalid content (bad checksum, bad state JSON)."""

    status = 422


class Unavailable(PvError):
    """503: busy; ``retry_after`` seconds go into the ``Retry-After`` header."""

    status = 503

    def __init__(self, message: str, retry_after: int):
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class InsufficientStorage(PvError):
    """507: over a body limit or out of disk (the contract uses one text for both)."""

    status = 507

    def __init__(self, message: str = NO_SPACE, headers: Optional[Mapping[str, str]] = None):
        super().__init__(message, headers=headers)
