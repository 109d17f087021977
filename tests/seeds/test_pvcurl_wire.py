"""The way upstream's pvcurl talks to pv-ctrl (docs/protocol.md §11), with the real `nc -U`.

pvcurl writes an HTTP/1.0 request with `Host: localhost`, a JSON content type
and a Content-Length on every request, pipes it through `nc -U`: a GET keeps
nc's write side open and waits for the server to close; other methods
half-close (`nc -N`) after sending. These tests do the same with netcat.
"""
import json
import shutil
import subprocess
import time

import pytest

pytestmark = pytest.mark.gunicorn


def nc(socket_path, request: bytes, half_close: bool) -> bytes:
    netcat = shutil.which("nc")
    if netcat is None:
        pytest.fail("netcat is required (make test installs netcat-openbsd)")
    args = [netcat, "-U", socket_path, "-w", "5"] + (["-N"] if half_close else [])
    if half_close:
        return subprocess.run(args, input=request, capture_output=True, timeout=10, check=True).stdout
    # stdin stays open, as pvcurl's does for a GET: only the server's close
    # ends nc before its 5 s idle timeout.
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    started = time.monotonic()
    try:
        proc.stdin.write(request)
        proc.stdin.flush()
        out = proc.stdout.read()
        assert time.monotonic() - started < 4, "the server did not close the connection"
        return out
    finally:
        proc.stdin.close()
        proc.wait(10)


def request(method: str, path: str, body: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def split(reply: bytes):
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_get_waits_for_the_server_to_close(demo_device):
    status, body = split(nc(demo_device.socket, request("GET", "/containers"), half_close=False))
    assert status == 200
    assert {c["name"] for c in json.loads(body)} >= {"pv-example-unix-server", "pv-example-unix-client"}


def test_put_with_half_close_is_answered(demo_device):
    status, body = split(nc(demo_device.socket, request("PUT", "/user-meta/pvcurl-key", b"via-nc"),
                            half_close=True))
    assert (status, body) == (200, b"")
    status, body = split(nc(demo_device.socket, request("GET", "/user-meta"), half_close=False))
    assert json.loads(body)["pvcurl-key"] == "via-nc"


def test_error_bodies_are_byte_exact_for_pvcontrol(demo_device):
    status, body = split(nc(demo_device.socket, request("PUT", "/daemons/nonexistent-daemon",
                                                        b'{"action":"stop"}'), half_close=True))
    assert (status, body) == (404, b'{"Error":"Daemon not found"}')
