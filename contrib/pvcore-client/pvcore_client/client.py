""":class:`PvClient`, a client of Pantavisor's pv-ctrl control socket.

pv-ctrl speaks HTTP over a Unix stream socket. :class:`PvClient` keeps one
HTTP/1.1 keep-alive connection open for all the requests it makes, so a
command that needs several round trips (``pvcontrol steps install``) does
not pay for a new connection each time.

Only the standard library is used, because the client has to run inside
minimal containers. PERF: and only its cheapest modules: HTTP is spoken over
the raw socket (:class:`_Connection`) rather than through ``http.client``,
whose imports (``email``, ``ssl``) cost more than the whole ``pvcontrol
containers ls`` otherwise does. :class:`UnixHTTPConnection`, for callers who
want ``http.client`` itself, is built on first use.
"""

from __future__ import annotations

import _socket  # PERF: the C module; socket.py imports enum and selectors

from pvcore_client.response import Headers, NoResponseError, Response

# PERF: typing is imported only by type checkers (this constant is the
# idiom they recognise); the annotations are strings at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Callable, Mapping, Optional

    ProgressCallback = Callable[[int, int], None]

#: Size of the pieces in which uploads and downloads are streamed.
CHUNK_SIZE = 1 << 20

#: Socket timeout in seconds; matches upstream pvcontrol's ``--max-time``.
DEFAULT_TIMEOUT = 240.0

#: Longest response head accepted (status line and headers).
_MAX_HEAD = 64 * 1024


def __getattr__(name):
    # PERF: http.client only for callers that ask for it (module __getattr__).
    if name == "UnixHTTPConnection":
        cls = globals()[name] = _unix_http_connection_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _unix_http_connection_class():
    import http.client
    import socket

    class UnixHTTPConnection(http.client.HTTPConnection):
        """:class:`http.client.HTTPConnection` whose transport is a Unix socket.

        The HTTP host stays ``localhost`` so the automatic ``Host`` header is
        ``localhost``: pv-ctrl drops connections that name any other host.
        """

        def __init__(self, socket_path: str, timeout=DEFAULT_TIMEOUT):
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

    UnixHTTPConnection.__module__ = __name__
    return UnixHTTPConnection


class _Closed(ConnectionError):
    """The server closed the connection before a complete response."""


class _Connection:
    """One HTTP/1.1 connection over a Unix socket: exactly what pv-ctrl needs
    (a request out; a status line, headers and a Content-Length, chunked or
    close-delimited body back)."""

    def __init__(self, path: str, timeout):
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._buf = b""
        #: False once the server said it closes, or the body runs to the close.
        self.reusable = True

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, size: int = 65536) -> None:
        data = self.sock.recv(size)
        if not data:
            raise _Closed("connection closed")
        self._buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self._buf:
            if len(self._buf) > _MAX_HEAD:
                raise _Closed("line too long")
            self._fill()
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def read_head(self, method: str):
        """Status, reason and :class:`Headers` of the response; 1xx skipped."""
        while True:
            while b"\r\n\r\n" not in self._buf:
                if len(self._buf) > _MAX_HEAD:
                    raise _Closed("response head too long")
                self._fill()
            head, self._buf = self._buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            version, _, rest = lines[0].partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/") or not code.isdigit():
                raise _Closed(f"malformed status line {lines[0][:80]!r}")
            status = int(code)
            if not 100 <= status < 200:
                break
        pairs = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                pairs.append((name.strip(), value.strip()))
        headers = Headers(pairs)
        connection = (headers.get("Connection") or "").lower()
        if connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive"):
            self.reusable = False
        if method == "HEAD" or status in (204, 304):
            self._left = 0
        elif "chunked" in (headers.get("Transfer-Encoding") or "").lower():
            self._left = None
            self._chunk = 0
        elif headers.get("Content-Length", "").strip().isdigit():
            self._left = int(headers.get("Content-Length"))
        else:
            self._left = -1  # until the server closes
            self.reusable = False
        return status, reason, headers

    def read(self, size: int = -1) -> bytes:
        """Up to *size* bytes of the body (all of it for -1); b"" at its end."""
        if self._left is None:
            return self._read_chunked(size)
        if self._left == -1:
            return self._read_to_close(size)
        want = self._left if size < 0 else min(size, self._left)
        if want <= 0:
            return b""
        if not self._buf:
            self._fill(min(max(want, 65536), CHUNK_SIZE))
        if size < 0:
            while len(self._buf) < want:
                self._fill(min(want - len(self._buf), CHUNK_SIZE))
        data, self._buf = self._buf[:want], self._buf[want:]
        self._left -= len(data)
        return data

    def _read_to_close(self, size: int) -> bytes:
        try:
            if size < 0:
                while True:
                    self._fill()
            if not self._buf:
                self._fill(min(max(size, 65536), CHUNK_SIZE))
        except _Closed:
            pass
        if size < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def _read_chunked(self, size: int) -> bytes:
        out = []
        got = 0
        while size < 0 or got < size:
            if self._chunk == 0:
                line = self._line().split(b";", 1)[0].strip()
                try:
                    self._chunk = int(line, 16)
                except ValueError:
                    raise _Closed(f"bad chunk size {line[:20]!r}") from None
                if self._chunk == 0:
                    while self._line():  # trailers, up to the empty line
                        pass
                    self._left = 0
                    break
            if not self._buf:
                self._fill()
            take = self._chunk if size < 0 else min(self._chunk, size - got)
            piece, self._buf = self._buf[:take], self._buf[take:]
            out.append(piece)
            got += len(piece)
            self._chunk -= len(piece)
            if self._chunk == 0:
                while len(self._buf) < 2:
                    self._fill()
                if self._buf[:2] != b"\r\n":
                    raise _Closed("chunk not followed by CRLF")
                self._buf = self._buf[2:]
        return b"".join(out)


def _request_head(method: str, path: str, headers) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    for name, value in headers.items():
        name, value = str(name), str(value)
        if any(c in name + value for c in "\r\n\0") or any(c in path for c in " \r\n\0\t"):
            raise ValueError(f"invalid header or path: {name!r}: {value!r} {path!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


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
        self._conn: Optional[_Connection] = None

    # -- lifecycle -------------------------------------------------------

    def close(self) -> None:
        """Close the connection; the next request opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

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
        conn, status, reason, rhdrs = self._exchange(method, path, hdrs, payload)
        return self._finish(conn, Response(status, reason, rhdrs), conn.read)

    def stream_get(self, path: str, fileobj: BinaryIO, chunk: int = CHUNK_SIZE) -> Response:
        """GET *path*, copying a 200 body into *fileobj* piece by piece.

        Only a 200 body is written to *fileobj*; any other status leaves it
        untouched and returns the (small, error) body in ``Response.body``.
        On success ``Response.streamed`` is the number of bytes written.

        :raises NoResponseError: the connection failed, including midway
            through the body (then *fileobj* holds a partial copy).
        """
        hdrs = self._headers(None, 0)
        conn, status, reason, rhdrs = self._exchange("GET", path, hdrs, b"")
        if status != 200:
            return self._finish(conn, Response(status, reason, rhdrs), conn.read)
        result = Response(status, reason, rhdrs)

        def copy() -> bytes:
            while True:
                piece = conn.read(chunk)
                if not piece:
                    return b""
                fileobj.write(piece)
                result.streamed += len(piece)

        self._finish(conn, result, copy)
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

        def send_body(conn: _Connection) -> None:
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

        conn, status, reason, rhdrs = self._exchange(method, path, hdrs, send_body, resendable=start is not None)
        return self._finish(conn, Response(status, reason, rhdrs), conn.read)

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
        import select

        if self._conn is None:
            return False
        try:
            readable, _, _ = select.select([self._conn.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _exchange(self, method: str, path: str, headers: Mapping[str, str], body, resendable: bool = True):
        """Send the request (*body*: bytes, or a function sending it); return
        ``(connection, status, reason, headers)`` with the body still to be
        read. Retries once on a reused connection."""
        head = _request_head(method, path, headers)
        for attempt in (1, 2):
            if self._conn is not None and self._idle_connection_dead():
                self.close()
            reused = self._conn is not None
            try:
                if self._conn is None:
                    self._conn = _Connection(self.socket_path, self.timeout)
                conn = self._conn
                if callable(body):
                    conn.send(head)
                    body(conn)
                else:
                    conn.send(head + body)
                status, reason, rhdrs = conn.read_head(method)
                return conn, status, reason, rhdrs
            except ValueError:
                raise
            except (BrokenPipeError, ConnectionResetError, _Closed) as exc:
                self.close()
                if reused and resendable and attempt == 1:
                    continue
                raise NoResponseError(f"{method} {path}: {exc or 'connection closed'}") from exc
            except OSError as exc:
                self.close()
                raise NoResponseError(f"{method} {path}: {exc}") from exc
        raise AssertionError("unreachable")

    def _finish(self, conn: _Connection, resp: Response, read) -> Response:
        try:
            resp.body = read()
        except OSError as exc:  # _Closed included: the body was cut short
            self.close()
            raise NoResponseError(f"reading response: {exc}") from exc
        if not conn.reusable:
            self.close()
        return resp
