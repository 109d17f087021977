"""Hostile input over the real socket: raw bytes, lying Content-Length, slow and vanishing senders.

Every answer is parsed from the raw bytes: a documented status with a JSON
``{"Error": ...}`` body (handler errors compact, framework errors libevent's
``{"Error": "Unsupported protocol"}``), within a socket timeout; after each
hostile exchange the server answers a normal request, and at the end its log
holds no ``unhandled_error`` and no traceback.
"""
import os
import socket
import time

import pytest
from hypothesis import given, strategies as st

from pvcore.testing import wait_until
from reliability_helpers import (
    HYPOTHESIS, assert_documented, files_under, get_json, parse_response, raw_exchange, sha256, start_server,
    stop_server,
)

pytestmark = pytest.mark.gunicorn

UPLOADS = ["/objects/{sha}", "/steps/locals/wire", "/user-meta/wire", "/device-meta/wire",
           "/containers/pv-example-unix-client", "/daemons/pv-xconnect", "/signal", "/steps/0/commitmsg"]
COUNTS = {"exchanges": 0}


@pytest.fixture(name="wire", scope="module")
def _wire():
    server = start_server()
    canary = os.path.join(server.base, "canary")
    os.makedirs(canary)
    outside = files_under(server.base, skip=(server.storage_dir, server.run_dir))
    outside.discard(server.log_path)
    yield server
    try:
        text = server.log_text()
        events = [e for e in server.log_events() if e.get("event") == "unhandled_error"]
        assert events == [], events[:3]
        assert "Traceback" not in text
        assert os.listdir(canary) == []
        after = files_under(server.base, skip=(server.storage_dir, server.run_dir)) - {server.log_path}
        assert after == outside
        print(f"\nwire: {COUNTS['exchanges']} hostile exchanges")
    finally:
        stop_server(server)


def _answer(server, raw: bytes, half_close: bool = True, where: str = ""):
    COUNTS["exchanges"] += 1
    reply = raw_exchange(server.socket, raw, timeout=10, half_close=half_close)
    assert reply, f"{where}: the connection was dropped without an answer"
    status, headers, body = parse_response(reply)
    assert_documented(status, body, where)
    return status, body


def _healthy(server):
    assert server.request("GET", "/user-meta")[0] == 200


def _request(method: str, path: bytes, body: bytes, length=None, extra=b"") -> bytes:
    length = len(body) if length is None else length
    return (b"%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n%s\r\n" % (method.encode(), path, length, extra)
            + body)


raw_segments = st.one_of(
    st.binary(min_size=1, max_size=60).filter(lambda b: b" " not in b and b"\r" not in b and b"\n" not in b),
    st.sampled_from([b"..", b"%2e%2e", b"..%2f..%2fetc", b"%00", b"\x00", b"\xff", b"a" * 300, b"a" * 5000,
                     b"x?y=1", b"x#frag", b"%2F", b"..\\..", b"%25", b"%"]),
)


@given(segment=raw_segments, template=st.sampled_from(
    [b"/objects/%s", b"/steps/%s", b"/steps/locals/%s", b"/user-meta/%s", b"/device-meta/%s",
     b"/containers/%s", b"/daemons/%s", b"/drivers/%s/load", b"/steps/%s/progress"]),
    method=st.sampled_from(["GET", "PUT", "DELETE"]))
def test_raw_path_bytes(wire, segment, template, method):
    _answer(wire, _request(method, template % segment, b"v"), where=f"{method} {template % segment!r}"[:200])
    _healthy(wire)


test_raw_path_bytes = HYPOTHESIS(test_raw_path_bytes)


@pytest.mark.parametrize("path", UPLOADS)
def test_content_length_longer_than_the_body(wire, path):
    """The client half-closes before its Content-Length: 400, nothing stored."""
    body = b'{"action":"restart","type":"ready","payload":""}'
    sha = sha256(body + b"more")
    target = path.format(sha=sha).encode()
    before = get_json(wire, "/user-meta").get("wire")
    status, reply = _answer(wire, _request("PUT" if path != "/signal" else "POST", target, body,
                                           length=len(body) + 4), where=path)
    assert status == 400 or (path == "/signal" and status == 500), (status, reply)
    assert not os.path.exists(os.path.join(wire.storage_dir, "objects", sha))
    assert get_json(wire, "/user-meta").get("wire") == before
    _healthy(wire)


@pytest.mark.parametrize("path", UPLOADS)
def test_content_length_shorter_than_the_body(wire, path):
    """The rest of the body is read as the next request: each gets a documented answer."""
    body = b'{"action":"restart"}' + b"GARBAGE / HTTP/1.1\r\nX: y\r\n\r\n"
    target = path.format(sha=sha256(body[:7])).encode()
    reply = raw_exchange(wire.socket, _request("PUT" if path != "/signal" else "POST", target, body, length=7),
                         timeout=10, half_close=True)
    COUNTS["exchanges"] += 1
    while reply:
        status, headers, rest = parse_response(reply)
        length = int(headers.get("content-length", len(rest)))
        assert_documented(status, rest[:length], path)
        reply = rest[length:] if len(rest) > length else b""
    _healthy(wire)


def test_slow_sender_is_served_and_does_not_block_others(wire):
    """A client that dribbles its body with pauses gets its write stored; others are served meanwhile."""
    value = b"slow-" + b"s" * 200
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(20)
    sock.connect(wire.socket)
    data = _request("PUT", b"/user-meta/slow", value)
    served = 0
    try:
        for i in range(0, len(data), 16):
            sock.sendall(data[i:i + 16])
            started = time.monotonic()
            _healthy(wire)  # another client, while this one is mid-request
            served += 1
            assert time.monotonic() - started < 2
            time.sleep(0.02)
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += sock.recv(4096)
    finally:
        sock.close()
    assert parse_response(reply)[0] == 200
    assert get_json(wire, "/user-meta")["slow"] == value.decode()
    COUNTS["exchanges"] += served


@pytest.mark.parametrize("path", UPLOADS)
def test_client_vanishes_mid_body(wire, path):
    """A sender that closes mid-body leaves nothing behind; the server goes on."""
    body = os.urandom(200_000) if "objects" in path else b'{"action":"stop"}' * 40
    target = path.format(sha=sha256(body)).encode()
    worker = wire.worker_pid()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(wire.socket)
    sock.sendall(_request("PUT" if path != "/signal" else "POST", target, body[: len(body) // 2], length=len(body)))
    sock.close()
    COUNTS["exchanges"] += 1
    _healthy(wire)
    assert wire.worker_pid() == worker
    objects = os.path.join(wire.storage_dir, "objects")
    wait_until(lambda: not [n for n in os.listdir(objects) if n.endswith(".tmp")], 10, message="temp file removed")
    assert not os.path.exists(os.path.join(objects, sha256(body)))


def test_a_connection_waiting_for_its_body_does_not_stall_the_server(wire):
    """Content-Length promises more than ever comes and the client waits: others are still served."""
    socks = []
    try:
        for _ in range(4):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(wire.socket)
            sock.sendall(_request("PUT", b"/user-meta/stall", b"abc", length=1000))
            socks.append(sock)
        for _ in range(20):
            _healthy(wire)
    finally:
        for sock in socks:
            sock.close()
    assert "stall" not in get_json(wire, "/user-meta")


def test_framing_attacks(wire):
    cases = [
        b"PUT /user-meta/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\nx",
        b"PUT /user-meta/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nshort!",
        b"PUT /user-meta/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999999999999999\r\n\r\nx",
        b"PUT /user-meta/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"PUT /steps/locals/c HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"PUT /objects/" + b"a" * 64 + b" HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET /containers HTTP/1.1\r\nHost: localhost\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
        b"GET /containers HTTP/1.1\r\nHost: localhost\r\nX: " + b"a" * 10000 + b"\r\n\r\n",
        b"GET /containers HTTP/9.9\r\nHost: localhost\r\n\r\n",
        b"PATCH /containers HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /containers HTTP/1.1\r\nHost: localhost\r\nExpect: 100-bogus\r\nContent-Length: 1\r\n\r\nx",
    ]
    for raw in cases:
        _answer(wire, raw, where=repr(raw[:60]))
        _healthy(wire)
    # no complete request line ever comes (a TLS hello): closing without an answer is libevent's way too
    reply = raw_exchange(wire.socket, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", timeout=10, half_close=True)
    if reply:
        assert_documented(*parse_response(reply)[::2], "tls hello")
    _healthy(wire)
    # the chunked body with a truncated chunk: the connection is closed, nothing stored
    reply = raw_exchange(wire.socket, b"PUT /steps/locals/cut HTTP/1.1\r\nHost: localhost\r\n"
                                      b"Transfer-Encoding: chunked\r\n\r\n50\r\n{\"#spec\"", timeout=10, half_close=True)
    if reply:
        assert_documented(*parse_response(reply)[::2], "truncated chunk")
    assert wire.request("GET", "/steps/locals/cut")[0] == 404
    _healthy(wire)
