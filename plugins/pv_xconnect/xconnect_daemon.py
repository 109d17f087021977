"""pv-xconnect: the demo device's service-mesh reconciler, as its own process.

Run as ``python -m pv_xconnect.xconnect_daemon`` with ``PVCORE_CTRL_SOCKET``
naming the pv-ctrl socket. Every 5 seconds, and at once on SIGUSR1, it asks
``GET /xconnect-graph`` (HTTP/1.0 over the Unix socket, stdlib only) and
prints the links as one JSON line on stdout whenever they change. A socket
that is not up yet, or a graph endpoint answering 4xx/5xx, is logged and
retried on the next round. SIGTERM ends it with status 0.

``--placeholder`` turns it into a harmless stand-in for daemons the demo
device cannot really run (``ssh``): it only waits for SIGTERM.

Like upstream's pv-xconnect at HEAD it only computes the graph; link keys are
``(consumer, name, target)`` and injection would go to ``target``, else
``interface``, else ``/tmp/pvx_<consumer>_<name>.sock``.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time

INTERVAL = 5.0
TIMEOUT = 5.0


def emit(event: str, **fields) -> None:
    """One JSON line on stdout (the daemon's log file)."""
    fields = {"event": event, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields}
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def http_get(socket_path: str, path: str, timeout: float = TIMEOUT):
    """``GET path`` over the Unix socket with HTTP/1.0; returns ``(status, body)``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode("ascii"))
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise ValueError("malformed HTTP response")
    return int(status_line[1]), body


def injection_path(link: dict) -> str:
    """Where the service socket would be injected in the consumer."""
    return link.get("target") or link.get("interface") or f"/tmp/pvx_{link.get('consumer')}_{link.get('name')}.sock"


def summarize(graph) -> list:
    """The links as sorted, comparable records."""
    links = []
    for link in graph if isinstance(graph, list) else ():
        if isinstance(link, dict):
            links.append({
                "consumer": link.get("consumer"),
                "provider": link.get("provider"),
                "name": link.get("name"),
                "type": link.get("type"),
                "consumer_pid": link.get("consumer_pid"),
                "provider_pid": link.get("provider_pid"),
                "path": injection_path(link),
            })
    return sorted(links, key=lambda item: json.dumps(item, sort_keys=True))


class Reconciler:
    """Fetches the graph and logs it when it changes (or a fetch fails differently)."""

    def __init__(self, socket_path: str, fetch=http_get):
        self._socket = socket_path
        self._fetch = fetch
        self._links = None
        self._last_problem = None

    def run_once(self) -> None:
        try:
            status, body = self._fetch(self._socket, "/xconnect-graph")
        except (OSError, ValueError) as exc:
            self._problem("xconnect_graph_unreachable", error=f"{type(exc).__name__}: {exc}")
            return
        if status != 200:
            self._problem("xconnect_graph_unavailable", status=status, body=body[:200].decode("utf-8", "replace"))
            return
        try:
            graph = json.loads(body)
        except ValueError:
            self._problem("xconnect_graph_invalid", body=body[:200].decode("utf-8", "replace"))
            return
        self._last_problem = None
        links = summarize(graph)
        if links != self._links:
            self._links = links
            emit("xconnect_graph", links=len(links), graph=links)

    def _problem(self, event: str, **fields) -> None:
        # Log a problem once until it changes, so a missing endpoint does not
        # fill the log every 5 seconds.
        key = (event, fields.get("status"))
        if key != self._last_problem:
            self._last_problem = key
            emit(event, **fields)


def _wakeup_pipe():
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd)
    return read_fd


def _read_signals(fd: int) -> set:
    received = set()
    while True:
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            return received
        if not data:
            return received
        received.update(data)


def serve(tick, interval: float) -> int:
    """Call ``tick`` every ``interval`` s and on SIGUSR1; return 0 on SIGTERM/SIGINT."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        # NOTE: the handler does nothing: the wakeup fd carries the signal
        # number to the select() below, which is race-free.
        signal.signal(signum, lambda *_: None)
    wake_fd = _wakeup_pipe()
    while True:
        if tick is not None:
            tick()
        deadline = time.monotonic() + interval
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            ready, _, _ = select.select([wake_fd], [], [], remaining)
            if not ready:
                break
            received = _read_signals(wake_fd)
            if received & {signal.SIGTERM, signal.SIGINT}:
                return 0
            if signal.SIGUSR1 in received and tick is not None:
                emit("xconnect_reconcile_requested")
                break


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--placeholder" in argv:
        emit("placeholder_started", pid=os.getpid())
        code = serve(None, 3600.0)
        emit("placeholder_stopped")
        return code
    socket_path = os.environ.get("PVCORE_CTRL_SOCKET", "/run/pantavisor/pv/pv-ctrl")
    emit("xconnect_started", pid=os.getpid(), socket=socket_path)
    code = serve(Reconciler(socket_path).run_once, INTERVAL)
    emit("xconnect_stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
