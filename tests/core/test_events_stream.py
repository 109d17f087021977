"""Black-box: ``GET /_pvcore/events`` on a real gunicorn, as a watcher sees it.

Writing user metadata is the event source here: each write takes and releases
the ``usrmeta`` wakelock (``wakelock.taken``/``wakelock.released``).
"""
import socket
import time

import pytest

from pvcore.testing import StreamReader, raw_request, wait_until

pytestmark = pytest.mark.gunicorn

USRMETA = "/_pvcore/events?types=wakelock.taken"
#: pv_xconnect's daemon follows the stream too; tests that count watchers leave it out.
NO_DAEMON = {"PVCORE_DISABLE_PLUGINS": "pv_xconnect"}


def write_meta(server, count, start=0, size=1):
    conn = server.client()
    try:
        for n in range(start, start + count):
            status, _, body = conn.call("PUT", f"/user-meta/k{n}", b"v%d" % n + b"x" * (size - 1))
            assert status == 200, body
    finally:
        conn.close()


def usrmeta_taken(event):
    return event["type"] == "wakelock.taken" and event["subject"] == "usrmeta"


def settled(server):
    """Wait until the device-meta facts published at start are written (on
    pv_metadata's own thread, the last one's ``meta.device`` event after its
    wakelock is released), so that only this test's writes make events."""
    with StreamReader(server.socket, "/_pvcore/events?since=0") as watcher:
        watcher.events_until(lambda e: e["type"] == "meta.device" and e["subject"] == "pantahub.claimed")


def test_events_arrive_in_order_and_a_reconnect_with_since_loses_nothing(start_gunicorn):
    server = start_gunicorn()
    settled(server)
    with StreamReader(server.socket, "/_pvcore/events") as watcher:
        assert watcher.status == 200
        assert watcher.headers["content-type"] == "application/x-ndjson"
        write_meta(server, 3)
        seen = [watcher.event(5) for _ in range(9)]
    assert [(e["type"], e["subject"]) for e in seen] == [
        event for i in range(3)
        for event in (("wakelock.taken", "usrmeta"), ("wakelock.released", "usrmeta"), ("meta.user", f"k{i}"))]
    ids = [e["id"] for e in seen]
    assert ids == sorted(ids) and len(set(ids)) == 9
    assert all(set(e) == {"id", "time", "type", "subject", "data"} for e in seen)

    write_meta(server, 2, start=3)  # while nobody watches
    with StreamReader(server.socket, f"/_pvcore/events?since={ids[-1]}") as watcher:
        replay = [watcher.event(5) for _ in range(6)]
        write_meta(server, 1, start=5)
        live = [watcher.event(5) for _ in range(3)]
    replayed = [e["id"] for e in replay + live]
    assert replayed == list(range(ids[-1] + 1, ids[-1] + 10))  # no gap, no repeat
    assert "pvcore.gap" not in {e["type"] for e in replay}


def test_a_since_older_than_the_buffer_gets_an_explicit_gap(start_gunicorn):
    server = start_gunicorn(env={"PVCORE_EVENTS_BUFFER": "8"})
    with StreamReader(server.socket, "/_pvcore/events") as watcher:
        write_meta(server, 1)
        first = watcher.event(5)
    write_meta(server, 10, start=1)  # 20 more events: the buffer holds 8
    with StreamReader(server.socket, f"/_pvcore/events?since={first['id']}") as watcher:
        gap = watcher.event(5)
        rest = [watcher.event(5) for _ in range(8)]
    assert gap["type"] == "pvcore.gap"
    assert gap["data"]["since"] == first["id"]
    assert gap["data"]["next"] == rest[0]["id"] == gap["id"] + 1
    assert [e["id"] for e in rest] == list(range(rest[0]["id"], rest[0]["id"] + 8))


def test_types_filter(start_gunicorn):
    server = start_gunicorn()
    with StreamReader(server.socket, "/_pvcore/events?types=wakelock.released") as watcher:
        write_meta(server, 2)
        events = [watcher.event(5) for _ in range(2)]
    assert {e["type"] for e in events} == {"wakelock.released"}


def test_the_watcher_beyond_max_watchers_gets_503_with_retry_after(start_gunicorn):
    server = start_gunicorn(env={"PVCORE_MAX_WATCHERS": "2", **NO_DAEMON})
    first = StreamReader(server.socket, "/_pvcore/events")
    second = StreamReader(server.socket, "/_pvcore/events")
    try:
        assert (first.status, second.status) == (200, 200)
        with StreamReader(server.socket, "/_pvcore/events") as third:
            assert third.status == 503
            assert int(third.headers["retry-after"]) > 0
            assert third.body == b'{"Error":"Too many watchers"}'
        # Normal requests are served meanwhile, on gunicorn's threads.
        for _ in range(20):
            assert server.request("GET", "/_pvcore/health")[0] == 200
    finally:
        first.close()

    def admitted():
        with StreamReader(server.socket, "/_pvcore/events") as again:
            return again.status == 200
    wait_until(admitted, 5, message="a slot to free up once a watcher left")
    second.close()


def test_a_watcher_that_never_reads_is_dropped_and_the_server_stays_responsive(start_gunicorn):
    server = start_gunicorn(env={"PVCORE_MAX_WATCHERS": "1", "PVCORE_STREAM_STALL_TIMEOUT": "1", **NO_DAEMON})
    sleeper = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sleeper.connect(server.socket)
    sleeper.sendall(b"GET /_pvcore/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
    try:
        deadline = time.monotonic() + 60
        written = 0
        while not any(e.get("event") == "stream_dropped" for e in server.log_events()):
            assert time.monotonic() < deadline, "the stalled watcher was never dropped"
            started = time.monotonic()
            write_meta(server, 50, start=written)
            written += 50
            assert (time.monotonic() - started) < 5, "requests slowed down behind a stalled watcher"
        dropped = [e for e in server.log_events() if e.get("event") == "stream_dropped"]
        assert dropped[0]["reason"] == "stalled"
        # The slot is free again and the server answers as before.
        with StreamReader(server.socket, "/_pvcore/events") as watcher:
            assert watcher.status == 200
        assert server.request("GET", "/_pvcore/health")[0] == 200
    finally:
        sleeper.close()


def test_http10_watcher_through_nc_style_client(start_gunicorn):
    server = start_gunicorn()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(server.socket)
        sock.sendall(b"GET /_pvcore/events?since=0 HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = b""
        while b"wakelock.taken" not in data:
            data += sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in data


def test_stopping_the_server_ends_open_streams_at_once(start_gunicorn):
    server = start_gunicorn()
    watchers = [StreamReader(server.socket, "/_pvcore/events") for _ in range(3)]
    try:
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 10
        assert all(w.closed(2) for w in watchers)
    finally:
        for w in watchers:
            w.close()


def test_non_mgmt_callers_are_refused(start_gunicorn):
    server = start_gunicorn()
    for bad in (b"x", b"%C2%B2", b"%D9%A3", b"-1", b"9" * 19):  # "²", Arabic-Indic 3: isdigit() but not ASCII
        reply = raw_request(server.socket, b"GET /_pvcore/events?since=%s HTTP/1.0\r\nHost: localhost\r\n\r\n" % bad)
        assert reply.startswith(b"HTTP/1.0 400 "), bad
        assert reply.endswith(b'{"Error":"Invalid since"}')
