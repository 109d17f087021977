"""Client library for Pantavisor's pv-ctrl control socket.

pv-ctrl speaks HTTP over a Unix stream socket. :class:`PvClient` keeps one
HTTP/1.1 keep-alive connection open for all the requests it makes, so a
command that needs several round trips (``pvcontrol steps install``) does
not pay for a new connection each time.

Only the standard library is used, because the client has to run inside
minimal containers.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Optional

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_TIMEOUT",
    "NoResponseError",
    "PvClient",
    "Response",
    "UnixHTTPConnection",
    "default_socket_path",
    "is_socket",
]

#: Size of the pieces in which uploads and downloads are streamed.
CHUNK_SIZE = 1 << 20

#: Socket timeout in seconds; matches upstream pvcontrol's ``--max-time``.
DEFAULT_TIMEOUT = 240.0

# Upstream's fixed locations, tried in this order when nothing else applies.
_UPSTREAM_SOCKETS = ("/run/pantavisor/pv/pv-ctrl", "/pv/pv-ctrl")
_CONTAINER_SOCKET = "/pantavisor/pv-ctrl"
_CHECKOUT_SOCKET = os.path.join("var", "run", "pv-ctrl")

ProgressCallback = Callable[[int, int], None]


class NoResponseError(ConnectionError):
    """The server could not be reached or closed the connection before
    sending a complete response."""


@dataclass
class Response:
    """One HTTP response from pv-ctrl.

    ``headers`` is the :class:`http.client.HTTPMessage` of the response
    (case-insensitive ``get``). ``body`` holds the raw body bytes, except for
    a successful :meth:`PvClient.stream_get`, where the body went to the
    caller's file and ``streamed`` counts its bytes.
    """

    status: int
    reason: str
    headers: Any
    body: bytes = b""
    streamed: int = 0

    @property
    def ok(self) -> bool:
        """True when the status is 200, the only success pv-ctrl reports."""
        return self.status == 200

    def json(self) -> Any:
        """Decode the body as JSON (raises :class:`ValueError` if it is not)."""
        return json.loads(self.body.decode("utf-8"))

    def text(self) -> str:
        """The body decoded as UTF-8, undecodable bytes replaced."""
        return self.body.decode("utf-8", "replace")


class UnixHTTPConnection(http.client.HTTPConnection):
    """:class:`http.client.HTTPConnection` whose transport is a Unix socket.

    The HTTP host stays ``localhost`` so the automatic ``Host`` header is
    ``localhost``: pv-ctrl drops connections that name any other host.
    """

    def __init__(self, socket_path: str, timeout: Optional[float] = DEFAULT_TIMEOUT):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        """Open the Unix socket (replaces the TCP connect of the base class)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def is_socket(path: str) -> bool:
    """True when *path* exists and is a Unix socket (symlinks followed)."""
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _checkout_socket(start: Path) -> Optional[str]:
    """The ``var/run/pv-ctrl`` socket of the source checkout enclosing
    *start*, so that running the CLI from a development tree talks to the
    server started from that tree."""
    if is_socket(str(start / _CHECKOUT_SOCKET)):
        return str(start / _CHECKOUT_SOCKET)
    for directory in start.parents:
        candidate = directory / _CHECKOUT_SOCKET
        if (directory / "setup.cfg").is_file() and is_socket(str(candidate)):
            return str(candidate)
    return None


def default_socket_path(
    environ: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None
) -> str:
    """Pick the pv-ctrl socket to use when none was given explicitly.

    In order: ``$PVCONTROL_SOCKET``; a ``var/run/pv-ctrl`` socket in *cwd*
    or in the nearest parent directory that is a checkout (holds
    ``setup.cfg``); upstream's ``/run/pantavisor/pv/pv-ctrl`` then
    ``/pv/pv-ctrl`` if they are sockets; finally ``/pantavisor/pv-ctrl``,
    where containers see the socket (returned even if it does not exist, so
    the caller can report it).

    *environ* and *cwd* default to the process environment and working
    directory; they are parameters so the lookup can be tested.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("PVCONTROL_SOCKET")
    if explicit:
        return explicit
    try:
        start = Path(cwd if cwd is not None else os.getcwd()).absolute()
    except OSError:  # cwd deleted under us
        start = None
    if start is not None:
        found = _checkout_socket(start)
        if found:
            return found
    for candidate in _UPSTREAM_SOCKETS:
        if is_socket(candidate):
            return candidate
    return _CONTAINER_SOCKET


class PvClient:
    """A pv-ctrl client holding one persistent HTTP/1.1 connection.

    :param socket_path: path of the pv-ctrl Unix socket.
    :param timeout: socket timeout in seconds for connecting and for each
        blocking read or write.

    Every request carries ``Host: localhost``, a ``Content-Length`` (0 when
    there is no body) and ``Content-Type: application/json`` unless the
    caller supplies another content type, as upstream's pvcurl does.

    When the server has closed an idle keep-alive connection the client
    reconnects and resends once; a fresh connection that fails raises
    :class:`NoResponseError`. Use as a context manager or call
    :meth:`close`.
    """

    def __init__(self, socket_path: str, timeout: Optional[float] = DEFAULT_TIMEOUT):
        self.socket_path = socket_path
        self.timeout = timeout
        self._conn = UnixHTTPConnection(socket_path, timeout=timeout)

    # -- lifecycle -------------------------------------------------------

    def close(self) -> None:
        """Close the connection; the next request opens a new one."""
        self._conn.close()

    def __enter__(self) -> "PvClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- public requests -------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Optional[bytes | str] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Response:
        """Send one request and read the whole response.

        :param method: HTTP method (``GET``, ``PUT``, ``POST``, ``DELETE``).
        :param path: request target, already percent-quoted, e.g.
            ``/steps/locals/x``.
        :param body: request body; ``str`` is encoded as UTF-8.
        :param headers: extra headers; they override the defaults.
        :raises NoResponseError: no complete response was received.
        """
        if isinstance(body, str):
            body = body.encode("utf-8")
        payload = body or b""
        hdrs = self._headers(headers, len(payload))
        resp = self._exchange(method, path, hdrs, lambda conn: conn.send(payload) if payload else None)
        return self._finish(resp, lambda: resp.read())

    def stream_get(self, path: str, fileobj: BinaryIO, chunk: int = CHUNK_SIZE) -> Response:
        """GET *path*, copying a 200 body into *fileobj* piece by piece.

        Only a 200 body is written to *fileobj*; any other status leaves it
        untouched and returns the (small, error) body in ``Response.body``.
        On success ``Response.streamed`` is the number of bytes written.

        :raises NoResponseError: the connection failed, including midway
            through the body (then *fileobj* holds a partial copy).
        """
        hdrs = self._headers(None, 0)
        resp = self._exchange("GET", path, hdrs, lambda conn: None)
        if resp.status != 200:
            return self._finish(resp, lambda: resp.read())

        def copy() -> bytes:
            while True:
                piece = resp.read(chunk)
                if not piece:
                    return b""
                fileobj.write(piece)
                result.streamed += len(piece)

        result = Response(resp.status, resp.reason, resp.headers)
        self._finish(resp, copy)
        return result

    def put_file(
        self,
        path: str,
        fileobj: BinaryIO,
        size: int,
        progress: Optional[ProgressCallback] = None,
        headers: Optional[Mapping[str, str]] = None,
        method: str = "PUT",
    ) -> Response:
        """Upload *size* bytes read from *fileobj* as the request body.

        The file is streamed in :data:`CHUNK_SIZE` pieces with
        ``Content-Length: size``, never held in memory as a whole.
        *progress*, if given, is called as ``progress(sent, size)`` after
        every piece (and once with 0 before the first).

        :raises ValueError: *fileobj* ended before *size* bytes; the
            connection is closed because the server is left waiting for the
            rest of the body.
        :raises NoResponseError: the server did not answer.
        """
        hdrs = self._headers(headers, size)
        try:
            start = fileobj.tell() if fileobj.seekable() else None
        except OSError:
            start = None

        def send_body(conn: http.client.HTTPConnection) -> None:
            if start is not None:
                fileobj.seek(start)
            sent = 0
            if progress:
                progress(0, size)
            while sent < size:
                piece = fileobj.read(min(CHUNK_SIZE, size - sent))
                if not piece:
                    self.close()
                    raise ValueError(f"input ended after {sent} of {size} bytes")
                conn.send(piece)
                sent += len(piece)
                if progress:
                    progress(sent, size)

        resp = self._exchange(method, path, hdrs, send_body, resendable=start is not None)
        return self._finish(resp, lambda: resp.read())

    # -- thin helpers ----------------------------------------------------

    def get_json(self, path: str) -> Any:
        """GET *path* and decode the JSON body.

        :raises NoResponseError: no response.
        :raises ValueError: status not 200 or body not JSON.
        """
        resp = self.request("GET", path)
        if not resp.ok:
            raise ValueError(f"GET {path}: {resp.status} {resp.text()}")
        return resp.json()

    def objects(self) -> list:
        """The object listing, ``[{"sha256": ..., "size": ...}, ...]``."""
        return self.get_json("/objects")

    def steps(self) -> list:
        """The revision listing, ``[{"name": ..., "date": ..., ...}, ...]``."""
        return self.get_json("/steps")

    def containers(self) -> list:
        """The containers of the running revision."""
        return self.get_json("/containers")

    # -- internals -------------------------------------------------------

    @staticmethod
    def _headers(extra: Optional[Mapping[str, str]], length: int) -> dict:
        hdrs = {"Content-Type": "application/json"}
        for name, value in (extra or {}).items():
            for existing in [k for k in hdrs if k.lower() == name.lower()]:
                del hdrs[existing]
            hdrs[name] = value
        if not any(k.lower() == "content-length" for k in hdrs):
            hdrs["Content-Length"] = str(length)
        return hdrs

    def _idle_connection_dead(self) -> bool:
        """A kept-alive socket that polls readable before we sent anything
        has been closed by the server (or holds garbage we cannot use)."""
        sock = self._conn.sock
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _exchange(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        send_body: Callable[[http.client.HTTPConnection], Any],
        resendable: bool = True,
    ) -> http.client.HTTPResponse:
        """Send the request line, headers and body; return the response
        with its headers read. Retries once on a reused connection."""
        for attempt in (1, 2):
            if self._idle_connection_dead():
                self.close()
            reused = self._conn.sock is not None
            conn = self._conn
            try:
                conn.putrequest(method, path, skip_accept_encoding=True)
                for name, value in headers.items():
                    conn.putheader(name, value)
                conn.endheaders()
                send_body(conn)
                return conn.getresponse()
            except ValueError:
                raise
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected) as exc:
                self.close()
                if reused and resendable and attempt == 1:
                    continue
                raise NoResponseError(f"{method} {path}: {exc or 'connection closed'}") from exc
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise NoResponseError(f"{method} {path}: {exc}") from exc
        raise AssertionError("unreachable")

    def _finish(self, resp: http.client.HTTPResponse, read: Callable[[], bytes]) -> Response:
        try:
            body = read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise NoResponseError(f"reading response: {exc}") from exc
        finally:
            resp.close()
        return Response(resp.status, resp.reason, resp.headers, body)

