"""Floods a container can send without privilege, and the host's view of them (issue 27 point 4).

``python -m pvcore.bench.flood connect --procs N --ready FILE`` (run as a
container: it reads ``PVCORE_CTRL_SOCKET``): N processes open and close
connections as fast as they can, with non-blocking connects, so a full
listen backlog never slows them down.

``python -m pvcore.bench.flood refused --connections N --ready FILE``: N
connections each send a request pvcore refuses on its head (``403``: a
non-mgmt caller's ``PUT /containers/x``) followed by a body that never ends
(chunked, a byte a second); each reconnects as soon as it is closed.

``python -m pvcore.bench.flood trickle --connections N --ready FILE``: the
same with ``POST /signal``, which any container may send: its body is read
by a request thread, a byte every 0.2 s.

``python -m pvcore.bench.flood streams --connections N --ready FILE`` (a
mgmt container): opens as many ``/_pvcore/events`` streams as it is given,
up to N, and holds them.

:func:`probe` is the host's side: requests made the way ``curl`` makes them
(a non-blocking connect: a full backlog is a failure, not a wait), timed.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import time
from typing import List, Optional, Tuple


def _ready(path: str) -> None:
    with open(path + ".tmp", "w") as fh:
        fh.write("ready\n")
    os.rename(path + ".tmp", path)


def connect_flood(path: str, procs: int, ready: str) -> None:
    """Open and close connections from ``procs`` processes until killed."""
    for _ in range(procs - 1):
        if os.fork() == 0:
            break
    else:
        _ready(ready)
    while True:
        sock = socket.socket(socket.AF_UNIX)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except OSError:
            pass
        sock.close()


REFUSED_HEAD = (b"PUT /containers/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"100000\r\n")
#: a request any container may make, whose (chunked) body a thread reads
SIGNAL_HEAD = (b"POST /signal HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"100000\r\n")


def refused_flood(path: str, connections: int, ready: str, head: bytes = REFUSED_HEAD) -> None:
    """Keep ``connections`` requests (refused ones by default) sending never-ending bodies."""
    socks: List[Optional[socket.socket]] = [None] * connections
    announced = False
    while True:
        for i, sock in enumerate(socks):
            try:
                if sock is None:
                    sock = socket.socket(socket.AF_UNIX)
                    sock.settimeout(0.5)
                    sock.connect(path)
                    sock.sendall(head)
                    socks[i] = sock
                else:
                    sock.sendall(b"x")
            except OSError:
                if sock is not None:
                    sock.close()
                socks[i] = None
        if not announced and all(socks):
            _ready(ready)
            announced = True
        time.sleep(0.2)


def stream_hog(path: str, connections: int, ready: str) -> None:
    """Hold every ``/_pvcore/events`` stream pvcore grants, up to ``connections``."""
    held = []
    statuses = []
    for _ in range(connections):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(b"GET /_pvcore/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        statuses.append(head.split(b" ", 2)[1].decode() if head.count(b" ") >= 2 else "closed")
        held.append(sock)
    with open(ready + ".tmp", "w") as fh:
        fh.write(" ".join(statuses) + "\n")
    os.rename(ready + ".tmp", ready)
    while True:
        time.sleep(1)


def probe(path: str, requests: int, timeout: float = 5.0, pause: float = 0.01,
          target: bytes = b"/containers") -> Tuple[List[float], int]:
    """``(seconds of each answered request, failures)``: ``GET target``, one connection each.

    A connect that finds the backlog full fails at once, as curl's does; so
    does an answer that takes longer than ``timeout``.
    """
    times: List[float] = []
    failures = 0
    for _ in range(requests):
        t0 = time.monotonic()
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.setblocking(False)
            sock.connect(path)  # AF_UNIX: completes at once or fails (EAGAIN: backlog full)
            sock.settimeout(timeout)
            sock.sendall(b"GET " + target + b" HTTP/1.0\r\nHost: localhost\r\n\r\n")
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            if not data.startswith(b"HTTP/1.") or data.split()[1] != b"200":
                raise OSError(f"answer {data[:40]!r}")
            times.append(time.monotonic() - t0)
        except OSError:
            failures += 1
        finally:
            sock.close()
        if pause:
            time.sleep(pause)
    return times, failures


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pvcore.bench.flood")
    parser.add_argument("kind", choices=("connect", "refused", "trickle", "streams", "probe"))
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--go", help="probe: start once this file exists; --connections calls")
    args = parser.parse_args(argv)
    path = os.environ["PVCORE_CTRL_SOCKET"]
    if args.kind == "probe":  # a caller's view from inside its container, written to --ready
        while not os.path.exists(args.go):
            time.sleep(0.05)
        times, failures = probe(path, args.connections)
        with open(args.ready + ".tmp", "w") as fh:
            json.dump({"times": times, "failures": failures}, fh)
        os.rename(args.ready + ".tmp", args.ready)
        while True:
            time.sleep(1)
    elif args.kind == "connect":
        connect_flood(path, args.procs, args.ready)
    elif args.kind == "streams":
        stream_hog(path, args.connections, args.ready)
    elif args.kind == "trickle":
        refused_flood(path, args.connections, args.ready, SIGNAL_HEAD)
    else:
        refused_flood(path, args.connections, args.ready)


if __name__ == "__main__":
    main()
