"""Figures for the event stream (``make bench``): watchers must not slow other
callers, and events must reach them quickly.

* 6 watchers: GET /containers p99 with ``max_watchers`` streams open (and
  reading) against none, interleaved runs in one server.
* 6 delivery: a state change (a user-metadata write) → its event at each of
  the open watchers: from publication (the event's own ``time``) and from the
  request that caused it.
* 6 reconcile: a demo container restarted by API gets a new pid; from the
  ``container.status`` event that makes it visible (``STARTED``) to the
  pv-xconnect daemon's log line showing the new pid.
"""
from __future__ import annotations

import calendar
import json
import os
import selectors
import shutil
import socket
import statistics
import threading
import time
from typing import Dict, List

from pvcore.bench.figures import _wait_settled, row
from pvcore.bench.loadgen import load
from pvcore.bench.servers import Server
from pvcore.testing import UnixHTTPConnection

WATCHERS = 16  # the max_watchers default
#: The demo device's pv-xconnect daemon is a watcher too: room for it and WATCHERS more.
ENV = {"PVCORE_MAX_WATCHERS": str(WATCHERS + 1)}


class Watchers:
    """``count`` open event streams, read by one thread that timestamps every line."""

    def __init__(self, socket_path: str, count: int, query: str = ""):
        self.socks = []
        for _ in range(count):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(socket_path)
            sock.sendall(f"GET /_pvcore/events{query} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            self.socks.append(sock)
        self.received: List[tuple] = []  # (arrival time, watcher index, event)
        self._bufs: Dict[int, bytes] = {}
        self._stop = False
        self._heads = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while self._heads < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self._heads} of {count} watchers were admitted")
            time.sleep(0.01)

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for index, sock in enumerate(self.socks):
            sel.register(sock, selectors.EVENT_READ, index)
            self._bufs[index] = b""
        while not self._stop:
            for key, _ in sel.select(0.2):
                data = key.fileobj.recv(65536)
                now = time.time()
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                buf = self._bufs[key.data] + data
                if b"\r\n\r\n" in buf and not buf.startswith(b"{"):
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    if not head.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(head.decode(errors="replace"))
                    self._heads += 1
                *lines, buf = buf.split(b"\n")
                self._bufs[key.data] = buf
                for line in lines:
                    self.received.append((now, key.data, json.loads(line)))

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        for sock in self.socks:
            sock.close()


def _p99(values: List[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def fig_watchers(quick: bool) -> List[dict]:
    """GET /containers p99 and req/s with ``WATCHERS`` streams open vs none."""
    seconds = 2 if quick else 6
    rounds = 1 if quick else 3
    server = Server(env=ENV).start()
    try:
        server.get("/containers")
        load(server.socket, "/containers", 16, 1)  # warm-up
        none, some = [], []
        for _ in range(rounds):
            none.append(load(server.socket, "/containers", 16, seconds))
            watchers = Watchers(server.socket, WATCHERS)
            try:
                some.append(load(server.socket, "/containers", 16, seconds))
            finally:
                watchers.close()
        for runs in (none, some):
            assert all(r["errors"] == 0 for r in runs), runs
        p99_none = statistics.median(r["p99_ms"] for r in none)
        p99_some = statistics.median(r["p99_ms"] for r in some)
        rps_none = statistics.median(r["rps"] for r in none)
        rps_some = statistics.median(r["rps"] for r in some)
        return [
            row("6 watchers", f"GET /containers p99 ms, 16 clients, {WATCHERS} watchers", p99_some,
                "no watcher", p99_none, "≤ 1.25×", lambda v, r: r <= 1.25),
            row("6 watchers", f"GET /containers req/s, 16 clients, {WATCHERS} watchers", rps_some,
                "no watcher", rps_none, "", None),
        ]
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


def fig_delivery(quick: bool) -> List[dict]:
    """State change → event at each of ``WATCHERS`` watchers, p50/p99."""
    changes = 50 if quick else 300
    server = Server(env=ENV).start()
    watchers = None
    try:
        server.get("/containers")
        watchers = Watchers(server.socket, WATCHERS, "?types=meta.user,wakelock.taken")
        conn = UnixHTTPConnection(server.socket)
        sent: Dict[int, float] = {}
        for n in range(changes):
            sent[n] = time.time()
            status, _, body = conn.call("PUT", f"/user-meta/bench-{n}", b"v%d" % n)
            assert status == 200, body
            time.sleep(0.01)
        conn.close()
        time.sleep(0.5)
        received = list(watchers.received)
        # One event per write at every watcher: meta.user names the key; the
        # usrmeta wakelock (where metadata publishes nothing) pairs up in order.
        kind = "meta.user" if any(e["type"] == "meta.user" for _, _, e in received) else "wakelock.taken"
        from_publish, from_request = [], []
        counts: Dict[int, int] = {}
        for arrived, index, event in received:
            if event["type"] != kind:
                continue
            if kind == "meta.user":
                n = int(event["subject"].rsplit("-", 1)[1])
            elif event["subject"] == "usrmeta":
                n = counts[index] = counts.get(index, -1) + 1
            else:
                continue
            from_publish.append((arrived - event["time"]) * 1000)
            from_request.append((arrived - sent[n]) * 1000)
        return [
            row("6 delivery", f"publish → watcher p99 ms, {WATCHERS} watchers ({kind})", _p99(from_publish),
                "", None, "< 50 ms", lambda v, r: v < 50),
            row("6 delivery", f"publish → watcher p50 ms, {WATCHERS} watchers", statistics.median(from_publish),
                "", None, "", None),
            # Includes serving the PUT itself (the change happens inside it): for information.
            row("6 delivery", f"PUT sent → watcher p99 ms, {WATCHERS} watchers", _p99(from_request), "", None,
                "", None),
            row("6 delivery", "deliveries seen", len(from_publish), "expected", changes * WATCHERS, "= 1.0×",
                lambda v, r: r == 1.0),
        ]
    finally:
        if watchers is not None:
            watchers.close()
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


def _iso(stamp: str) -> float:
    whole, _, frac = stamp.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + (frac or "0"))


def fig_reconcile(quick: bool) -> List[dict]:
    """Container pid change → pv-xconnect reconciled, p50/max over restarts."""
    restarts = 5 if quick else 20
    consumer = "pv-example-unix-client"
    server = Server(env=ENV).start()
    watchers = None
    try:
        _wait_settled(server)
        log_path = os.path.join(server.base, "storage", "logs", "daemons", "pv-xconnect.log")
        watchers = Watchers(server.socket, 1, "?types=container.status")
        latencies = []
        for _ in range(restarts):
            mark = len(watchers.received)
            conn = UnixHTTPConnection(server.socket)
            status, _, body = conn.call("PUT", f"/containers/{consumer}", b'{"action":"restart"}')
            conn.close()
            assert status == 200, body
            deadline = time.monotonic() + 20
            started = None
            while started is None and time.monotonic() < deadline:
                for _, _, event in watchers.received[mark:]:
                    if event["subject"] == consumer and event["data"].get("new") == "STARTED":
                        started = event
                time.sleep(0.01)
            assert started is not None, "the consumer never restarted"
            pid = _pids(server).get(consumer)
            reconciled = None
            while reconciled is None and time.monotonic() < deadline:
                with open(log_path) as fh:
                    for line in fh:
                        try:
                            entry = json.loads(line)
                        except ValueError:
                            continue
                        if entry.get("event") == "xconnect_graph" and any(
                                link.get("consumer_pid") == pid for link in entry.get("graph", ())):
                            reconciled = _iso(entry["timestamp"])
                            break
                time.sleep(0.01)
            assert reconciled is not None, f"pv-xconnect never showed pid {pid}"
            latencies.append((reconciled - started["time"]) * 1000)
            _wait_settled(server)
        polls = 0
        with open(log_path) as fh:
            polls = sum(1 for line in fh if '"xconnect_polling"' in line)
        return [
            row("6 reconcile", f"pid change → pv-xconnect reconciled, max ms ({restarts} restarts)", max(latencies),
                "", None, "< 200 ms", lambda v, r: v < 200),
            row("6 reconcile", "pid change → pv-xconnect reconciled, p50 ms", statistics.median(latencies), "", None,
                "", None),
            row("6 reconcile", "periodic polls in the daemon's log", polls, "", None, "0", lambda v, r: v == 0),
        ]
    finally:
        if watchers is not None:
            watchers.close()
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


def _pids(server) -> Dict[str, int]:
    conn = UnixHTTPConnection(server.socket)
    try:
        status, _, body = conn.call("GET", "/xconnect-graph")
    finally:
        conn.close()
    pids = {}
    for link in json.loads(body) if status == 200 else ():
        pids[link.get("consumer")] = link.get("consumer_pid")
        pids[link.get("provider")] = link.get("provider_pid")
    return pids


STREAM_FIGURES = (fig_watchers, fig_delivery, fig_reconcile)
