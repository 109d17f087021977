"""A trivial HTTP/1.1 server for measuring the load generator's own ceiling.

``python -m pvcore.bench.trivial SOCKET [BODY_FILE]`` answers every request on
the Unix socket ``SOCKET`` with the same fixed ``200`` response (the body of
``BODY_FILE``, or ``[]``), from one epoll loop with no parsing beyond finding
the end of each request head. It serves GETs only, which is all the bench
sends; it is as cheap as a Python server gets, so whatever rate the load
generator reaches against it is a floor for the load generator's ceiling.
"""
from __future__ import annotations

import os
import select
import socket
import sys

END = b"\r\n\r\n"


def response(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode("ascii") + body


def serve(path: str, body: bytes) -> None:
    reply = response(body)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(128)
    listener.setblocking(False)
    poll = select.epoll()
    poll.register(listener.fileno(), select.EPOLLIN)
    conns, pending = {}, {}
    lfd = listener.fileno()
    while True:
        for fd, _events in poll.poll():
            if fd == lfd:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                conns[conn.fileno()] = conn
                pending[conn.fileno()] = b""
                poll.register(conn.fileno(), select.EPOLLIN)
                continue
            conn = conns[fd]
            try:
                data = conn.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                buf = pending[fd] + data
                count = buf.count(END)
                if not count:
                    pending[fd] = buf
                    continue
                pending[fd] = buf[buf.rfind(END) + len(END):]
                try:
                    # NOTE: replies are small and the client reads them before
                    # sending more; a blocking send keeps the loop trivial.
                    conn.setblocking(True)
                    conn.sendall(reply * count)
                    conn.setblocking(False)
                    continue
                except OSError:
                    pass  # the client left mid-reply (the end of a run)
            poll.unregister(fd)
            conn.close()
            del conns[fd], pending[fd]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    body = b"[]"
    if len(argv) > 1:
        with open(argv[1], "rb") as fh:
            body = fh.read()
    try:
        os.unlink(argv[0])
    except FileNotFoundError:
        pass
    serve(argv[0], body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
