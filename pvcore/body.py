"""Reading request bodies the way docs/protocol.md §5 states.

Small bodies are read whole but never beyond ``limit + 1`` bytes, so a
hostile client cannot make the worker buffer more than that, and within one
overall deadline. What is left of a small body is drained so the connection
stays usable; a larger rest is left unread and the connection closes.
"""
from __future__ import annotations

import json
import time
from typing import Any, Dict, Optional

from pvcore.errors import BadRequest, InsufficientStorage

try:  # the server's own body-framing errors (bad chunk size, body cut short)
    from gunicorn.http.errors import NoMoreData as _NoMoreData, ParseException as _ParseException
    # OSError: the peer reset the connection or stalled past io_timeout
    # (pvcore/connections.py) in the middle of its body.
    _FRAMING_ERRORS: tuple = (_NoMoreData, _ParseException, OSError)
except ImportError:  # pragma: no cover - gunicorn is a dependency
    _FRAMING_ERRORS = ()

_DRAIN_CHUNK = 1 << 16
#: A body that ended (client closed or half-closed) before its Content-Length
#: or its last chunk, or whose chunked framing is broken.
INCOMPLETE = "Request body is incomplete"
_CHECKED = "pvcore.checked_body"


def _incomplete() -> BadRequest:
    # The connection cannot carry another request after a broken body.
    return BadRequest(INCOMPLETE, headers={"Connection": "close"})


class _CheckedBody:
    """Reads a Content-Length body and refuses to pass off a short one as complete.

    gunicorn's body reader returns fewer bytes than asked only at end of
    input, so a short read before ``expected`` bytes means the client gave up:
    storing what came would acknowledge a truncated write.
    """

    def __init__(self, stream, expected: Optional[int]):
        self._stream = stream
        self._expected = expected
        self._seen = 0
        #: the whole body has been read
        self.done = False

    def read(self, size: int = -1) -> bytes:
        whole = size is None or size < 0
        try:
            data = self._stream.read() if whole else self._stream.read(size)
        except _FRAMING_ERRORS:
            raise _incomplete() from None
        self._seen += len(data)
        if self._expected is not None and self._seen < self._expected and (whole or len(data) < size):
            raise _incomplete()
        if whole or len(data) < size or (self._expected is not None and self._seen >= self._expected):
            self.done = True
        return data


def body_stream(req):
    """The request body as a file object that ends at the end of the body.

    Falcon's ``bounded_stream`` trusts ``Content-Length`` alone and reads a
    chunked body as empty; a server that sets ``wsgi.input_terminated``
    (gunicorn) already ends ``wsgi.input`` at the body's end, chunked or not.
    A body shorter than its ``Content-Length`` raises :class:`BadRequest`
    (``Request body is incomplete``) instead of ending early.
    """
    if req.env.get("wsgi.input_terminated"):
        checked = req.env.get(_CHECKED)
        if checked is None:
            checked = req.env[_CHECKED] = _CheckedBody(req.stream, req.content_length or None)
        return checked
    return req.bounded_stream


#: The most :func:`drain` reads to keep a connection open: what the poll loop
#: reads ahead with a head anyway (pvcore/connections.py ``SMALL_BODY``).
DRAIN_LIMIT = 64 * 1024
#: environ key: the body was left unread, so the connection must close.
UNREAD = "pvcore.unread_body"


def drain(req) -> bool:
    """Discard what is left of a small request body; leave any other unread.

    A body declared at most :data:`DRAIN_LIMIT` bytes is read (the poll loop
    already holds it) so the connection can carry the next request. A larger
    or chunked body that was not read to its end is not read at all: the
    response closes the connection instead (``UNREAD`` in environ, honoured
    by :class:`pvcore.app.RequestContext`), so a refused request with an
    endless body holds no thread (docs/architecture.md, "Connections").

    :return: ``True`` when the connection can be kept.
    """
    length = req.content_length
    checked = req.env.get(_CHECKED)
    if checked is not None and checked.done:
        return True
    if _chunked(req) or (length is not None and length > DRAIN_LIMIT):
        req.env[UNREAD] = True
        return False
    stream = req.stream if req.env.get("wsgi.input_terminated") else req.bounded_stream
    try:
        with body_deadline(req):
            while stream.read(_DRAIN_CHUNK):
                pass
    except _FRAMING_ERRORS:
        pass
    return True


def _chunked(req) -> bool:
    return "chunked" in (req.get_header("Transfer-Encoding") or "").lower()


class body_deadline:  # noqa: N801 - used as a context manager
    """Bound the reads of a small body by one overall deadline (``header_timeout``).

    gunicorn's socket waits ``io_timeout`` per read; a peer trickling a byte
    every few seconds would hold the thread for ever. :class:`pvcore.peersocket.PeerSocket`
    honours ``deadline``; other sockets (test clients) are left as they are.
    """

    seconds = 10.0

    def __init__(self, req):
        sock = req.env.get("gunicorn.socket")
        self._sock = sock if hasattr(sock, "deadline") else None

    def __enter__(self):
        if self._sock is not None and self._sock.deadline is None:
            self._sock.deadline = time.monotonic() + self.seconds
        else:
            self._sock = None  # an outer deadline already runs
        return self

    def __exit__(self, *exc):
        if self._sock is not None:
            self._sock.deadline = None
        return False


def read_small_body(req, limit: int, empty_message: Optional[str] = None) -> bytes:
    """Return the body, at most ``limit`` bytes.

    :raises InsufficientStorage: the body is longer than ``limit`` (the
        contract's 507 ``Not enough disk space available``).
    :raises BadRequest: the body is empty and ``empty_message`` is given.
    """
    with body_deadline(req):
        data = body_stream(req).read(limit + 1)
    if len(data) > limit:
        drain(req)
        raise InsufficientStorage()
    if not data and empty_message is not None:
        raise BadRequest(empty_message)
    return data


def _reject_duplicates(pairs):
    result: Dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_json_object(data: bytes, message: str) -> Dict[str, Any]:
    """Parse ``data`` as a JSON object; anything else is 400 ``message``.

    Duplicate keys are rejected rather than silently resolved, and invalid
    UTF-8, NaN and non-object documents all count as malformed.
    """
    try:
        text = data.decode("utf-8")
        doc = json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest(message) from None
    if not isinstance(doc, dict):
        raise BadRequest(message)
    return doc


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


def dumps(doc: Any) -> bytes:
    """Compact JSON bytes, as upstream's serializer writes them."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
