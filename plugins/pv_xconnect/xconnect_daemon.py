"""pv-xconnect: the demo device's service-mesh reconciler, as its own process.

Run as ``python -m pv_xconnect.xconnect_daemon`` with ``PVCORE_CTRL_SOCKET``
naming the pv-ctrl socket. It follows pvcore's event stream
(``GET /_pvcore/events``, docs/plugins.md) and reconciles whenever a container
changes status (its pid may have changed) or another revision runs: it asks
``GET /xconnect-graph`` (HTTP/1.0 over the Unix socket, stdlib only) and
prints the links as one JSON line on stdout whenever they change. It also
reconciles on SIGUSR1 and each time it (re)connects to the stream, resuming
with ``?since=`` so nothing is missed; there is no periodic poll. Against a
pv-ctrl without the stream (upstream's) it falls back to asking every 5
seconds. A socket that is not up yet, or an endpoint answering 4xx/5xx, is
logged once and retried. SIGTERM ends it with status 0.

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
#: What can change the graph: a container's status (and with it its pid), the running revision.
EVENTS = "/_pvcore/events?types=container.status,revision.running"
#: Longest wait between two attempts to reach the stream.
MAX_BACKOFF = 5.0


def emit(event: str, **fields) -> None:
    """One JSON line on stdout (the daemon's log file)."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    fields = {"event": event, "timestamp": stamp, **fields}
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


class EventFollower:
    """pvcore's event stream on a connection of its own; resumes after the last id seen."""

    def __init__(self, socket_path: str):
        self._socket = socket_path
        self.sock = None
        self.last_id = None
        self._buf = b""

    def connect(self):
        """Open the stream: ``("ok", None)``, ``("unsupported", status)`` for a
        pv-ctrl without it, ``("refused", (status, retry_after))``.

        :raises OSError: the socket is not there or the server hung up.
        """
        path = EVENTS if self.last_id is None else f"{EVENTS}&since={self.last_id}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(TIMEOUT)
            sock.connect(self._socket)
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode("ascii"))
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("closed before answering")
                data += chunk
        except BaseException:
            sock.close()
            raise
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status != 200:
            sock.close()
            if status in (400, 404):
                return "unsupported", status
            retry = next((ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("retry-after:")), "")
            return "refused", (status, float(retry) if retry.isdigit() else None)
        sock.settimeout(None)
        self.sock, self._buf = sock, b""
        return "ok", self._take(rest)

    def read(self):
        """The events that arrived (a list), or ``None`` when the stream ended."""
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.close()
            return None
        return self._take(data)

    def _take(self, data: bytes) -> list:
        *lines, self._buf = (self._buf + data).split(b"\n")
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and isinstance(event.get("id"), int):
                self.last_id = event["id"]
                events.append(event)
        return events

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


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


def follow(reconciler: Reconciler, socket_path: str) -> int:
    """Reconcile on every relevant event, on (re)connect and on SIGUSR1; fall
    back to :func:`serve`'s 5 s rounds against a pv-ctrl without the stream.
    Returns 0 on SIGTERM/SIGINT."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(signum, lambda *_: None)  # see serve()
    wake_fd = _wakeup_pipe()
    stream = EventFollower(socket_path)
    backoff, polling, problem = 0.1, False, None
    retry_at = 0.0
    reconciler.run_once()  # the graph as it is now, even while the stream is out of reach
    while True:
        if stream.sock is None and not polling and time.monotonic() >= retry_at:
            try:
                outcome, detail = stream.connect()
            except OSError as exc:
                outcome, detail = "down", f"{type(exc).__name__}: {exc}"
            if outcome == "ok":
                emit("xconnect_following", since=stream.last_id)  # at start and after a reconnect only
                problem, backoff = None, 0.1
                reconciler.run_once()
            elif outcome == "unsupported":
                polling = True
                emit("xconnect_polling", status=detail, interval=INTERVAL)
                reconciler.run_once()
            else:
                # Logged once per kind of problem; retried with a growing delay.
                if outcome != problem:
                    problem = outcome
                    emit("xconnect_stream_unavailable", reason=outcome, detail=str(detail))
                delay = backoff
                if outcome == "refused" and detail[1]:
                    delay = max(delay, detail[1])
                retry_at = time.monotonic() + delay
                backoff = min(backoff * 2, MAX_BACKOFF)
        if polling:
            timeout = INTERVAL
        elif stream.sock is None:
            timeout = max(0.0, retry_at - time.monotonic())
        else:
            timeout = None
        watched = [wake_fd] + ([stream.sock] if stream.sock is not None else [])
        ready, _, _ = select.select(watched, [], [], timeout)
        if wake_fd in ready:
            received = _read_signals(wake_fd)
            if received & {signal.SIGTERM, signal.SIGINT}:
                stream.close()
                return 0
            if signal.SIGUSR1 in received:
                emit("xconnect_reconcile_requested")
                reconciler.run_once()
        if stream.sock is not None and stream.sock in ready:
            events = stream.read()
            if events is None:
                problem = "lost"
                emit("xconnect_stream_lost", last_id=stream.last_id)
                retry_at = time.monotonic() + backoff
            elif events:
                reconciler.run_once()  # one round for every event that arrived together
        if polling and not ready:
            reconciler.run_once()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--placeholder" in argv:
        emit("placeholder_started", pid=os.getpid())
        code = serve(None, 3600.0)
        emit("placeholder_stopped")
        return code
    socket_path = os.environ.get("PVCORE_CTRL_SOCKET", "/run/pantavisor/pv/pv-ctrl")
    emit("xconnect_started", pid=os.getpid(), socket=socket_path)
    code = follow(Reconciler(socket_path), socket_path)
    emit("xconnect_stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
