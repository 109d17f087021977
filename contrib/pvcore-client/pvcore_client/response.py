"""What pv-ctrl answered: :class:`Response`, its :class:`Headers`, and
:class:`NoResponseError` when it answered nothing."""

from __future__ import annotations


class NoResponseError(ConnectionError):
    """The server could not be reached or closed the connection before
    sending a complete response."""


class Headers:
    """Response headers in arrival order, looked up case-insensitively
    (``get``, ``[]``, ``in``, ``get_all``), like ``http.client``'s."""

    def __init__(self, pairs=()):
        self._pairs = list(pairs)

    def get(self, name: str, default=None):
        lname = name.lower()
        for key, value in self._pairs:
            if key.lower() == lname:
                return value
        return default

    def get_all(self, name: str, failobj=None):
        lname = name.lower()
        found = [value for key, value in self._pairs if key.lower() == lname]
        return found or failobj

    def __getitem__(self, name: str):
        return self.get(name)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def items(self):
        return list(self._pairs)

    def keys(self):
        return [key for key, _ in self._pairs]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._pairs)

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


class Response:
    """One HTTP response from pv-ctrl.

    ``headers`` is a :class:`Headers` (case-insensitive ``get``). ``body``
    holds the raw body bytes, except for a successful
    :meth:`PvClient.stream_get`, where the body went to the caller's file and
    ``streamed`` counts its bytes.
    """

    __slots__ = ("status", "reason", "headers", "body", "streamed")

    def __init__(self, status: int, reason: str, headers, body: bytes = b"", streamed: int = 0):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.streamed = streamed

    def __repr__(self) -> str:
        return f"Response(status={self.status!r}, reason={self.reason!r}, body={self.body[:80]!r})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    @property
    def ok(self) -> bool:
        """True when the status is 200, the only success pv-ctrl reports."""
        return self.status == 200

    def json(self):
        """Decode the body as JSON (raises :class:`ValueError` if it is not)."""
        import json

        return json.loads(self.body.decode("utf-8"))

    def text(self) -> str:
        """The body decoded as UTF-8, undecodable bytes replaced."""
        return self.body.decode("utf-8", "replace")
