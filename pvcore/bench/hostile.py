"""A hostile pv-ctrl client: holds connections that stop mid-request.

``python -m pvcore.bench.hostile --connections 64 --ready FILE [--object SHA]``
(run as a container: it reads ``PVCORE_CTRL_SOCKET``). It opens, in turn:

* ``head``: a request head that never ends;
* ``trickle``: a ``PUT /user-meta/<key>`` whose body comes at 1 byte/s
  (alternately a small one and one that declares 1 MB);
* ``download``: ``GET /objects/<sha>`` never read (with ``--object``);
* ``keepalive``: one answered request, then silence;
* ``idle``: a connection that never sends anything.

Once all are open it writes ``{"opened": n, "kinds": {...}}`` to ``--ready``
and keeps trickling until it is killed. The reliability suite and ``make
bench`` run it to show that such a caller starves nobody but itself.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import time
from collections import Counter
from typing import List, Optional, Tuple

KINDS = ("head", "trickle", "download", "keepalive", "idle")


def _read_response(sock: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return
        body += chunk


def open_one(path: str, kind: str, index: int, sha: Optional[str]) -> Tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(path)
    if kind == "head":
        sock.sendall(b"GET /containers HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
    elif kind == "trickle":
        length = 100 if index % 2 else 1_000_000
        sock.sendall(b"PUT /user-meta/hostile-%d HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n"
                     % (index, length))
    elif kind == "download":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /objects/%s HTTP/1.1\r\nHost: localhost\r\n\r\n" % sha.encode())
    elif kind == "keepalive":
        sock.sendall(b"GET /containers HTTP/1.1\r\nHost: localhost\r\n\r\n")
        _read_response(sock)
    return sock, kind


def open_all(path: str, count: int, sha: Optional[str]) -> List[Tuple[socket.socket, str]]:
    kinds = [k for k in KINDS if k != "download" or sha]
    plan = [(kinds[i % len(kinds)], i) for i in range(count)]
    # the keep-alives first: their answers come before the others hold this caller's threads
    plan.sort(key=lambda item: item[0] != "keepalive")
    return [open_one(path, kind, i, sha) for kind, i in plan]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pvcore.bench.hostile")
    parser.add_argument("--socket", default=os.environ.get("PVCORE_CTRL_SOCKET"))
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--object", help="sha of a large stored object to download without reading")
    parser.add_argument("--ready", required=True, help="file written once every connection is open")
    args = parser.parse_args(argv)
    held = open_all(args.socket, args.connections, args.object)
    tmp = args.ready + ".tmp"
    with open(tmp, "w") as fh:
        json.dump({"opened": len(held), "kinds": Counter(kind for _, kind in held), "pid": os.getpid()}, fh)
    os.rename(tmp, args.ready)
    trickles = [sock for sock, kind in held if kind == "trickle"]
    while True:
        time.sleep(1)
        for sock in list(trickles):
            try:
                sock.send(b"x")
            except OSError:
                trickles.remove(sock)


if __name__ == "__main__":
    raise SystemExit(main())
