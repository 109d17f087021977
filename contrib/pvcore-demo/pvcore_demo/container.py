"""The demo device's container program: stays up until told to stop.

``python -m pvcore_demo.container [--ready]``. With ``--ready`` it sends
``POST /signal {"type":"ready","payload":""}`` over the pv-ctrl socket (path in
``PVCORE_CTRL_SOCKET``, else ``/pantavisor/pv-ctrl``), retrying while the
server is busy starting, the way a real container signals readiness.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time

READY = b'{"type":"ready","payload":""}'


def send_ready(path: str, deadline: float, stopping=()) -> bool:
    request = (
        b"POST /signal HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(READY), READY)
    )
    delay = 0.05
    while time.monotonic() < deadline and not stopping:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(path)
                sock.sendall(request)
                reply = b""
                while True:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
            status = reply.split(b" ", 2)[1] if reply.startswith(b"HTTP/") else b""
            if status == b"200":
                return True
            print(f"ready signal answered {reply[:200]!r}", file=sys.stderr, flush=True)
        except OSError as exc:
            print(f"ready signal failed: {exc}", file=sys.stderr, flush=True)
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="pvcore_demo.container")
    parser.add_argument("--ready", action="store_true", help="signal READY over pv-ctrl")
    parser.add_argument("--ready-after", type=float, default=0.0,
                        help="wait this many seconds before signalling READY (tests)")
    parser.add_argument("--exit-after", type=float, default=None, help="exit after this many seconds (tests)")
    parser.add_argument("--exit-code", type=int, default=1)
    args = parser.parse_args(argv)

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    name = os.environ.get("PVCORE_CONTAINER", "?")
    print(f"container {name} up, pid {os.getpid()}", flush=True)
    if args.ready:
        if args.ready_after > 0:
            deadline = time.monotonic() + args.ready_after
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.05)
        path = os.environ.get("PVCORE_CTRL_SOCKET", "/pantavisor/pv-ctrl")
        if not send_ready(path, time.monotonic() + 60, stopping) and not stopping:
            return 2
    started = time.monotonic()
    while not stopping:
        if args.exit_after is not None and time.monotonic() - started >= args.exit_after:
            return args.exit_code
        time.sleep(0.1)
    print(f"container {name} stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
