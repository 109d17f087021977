"""Black-box: a response leaves in one write (pvcore/worker.py, docs/protocol.md §1).

A client like upstream's ``pvtx`` waits until the socket is readable, then
reads once what is there; it must find the head *and* the whole body.
"""
import hashlib
import json
import select
import shutil
import socket

import pytest

from pvcore.testing import GunicornServer, short_tempdir

pytestmark = pytest.mark.gunicorn

ROUNDS = 30


@pytest.fixture(scope="module")
def server():
    srv = GunicornServer(short_tempdir(), {"PVCORE_DEMO": "1"})
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(srv.base, ignore_errors=True)


def one_read(socket_path: str, request: bytes) -> bytes:
    """Send ``request``, wait until the answer starts, then read once without blocking."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(socket_path)
        sock.sendall(request)
        readable, _, _ = select.select([sock], [], [], 10)
        assert readable, "no answer within 10 s"
        return sock.recv(1 << 20, socket.MSG_DONTWAIT)


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()


def split(reply: bytes):
    head, sep, body = reply.partition(b"\r\n\r\n")
    assert sep, f"no complete head in the first read: {reply[:200]!r}"
    fields = {name.lower(): value for name, value in (line.split(b": ", 1) for line in head.split(b"\r\n")[1:])}
    return head.split(b"\r\n")[0], fields, body


def test_a_json_answer_arrives_with_its_head(server):
    for _ in range(ROUNDS):
        status, fields, body = split(one_read(server.socket, get("/containers")))
        assert status == b"HTTP/1.1 200 OK"
        assert int(fields[b"content-length"]) == len(body) > 100
        assert json.loads(body)  # the containers change status meanwhile


def test_a_file_sent_by_sendfile_arrives_with_its_head(server):
    # GET /steps/<rev> serves the state file itself (a file wrapper: sendfile).
    state = json.loads(server.request("GET", "/steps/current")[2])
    state["#spec"] = "pantavisor-service-system@1"
    state["pad.json"] = {"pad": "x" * 20000}
    body = json.dumps(state).encode()
    status = server.request("PUT", "/steps/locals/one-write", body, {"Content-Type": "application/json"})[0]
    assert status == 200
    stored = server.request("GET", "/steps/locals/one-write")[2]
    assert len(stored) > 20000
    for _ in range(ROUNDS):
        status, fields, got = split(one_read(server.socket, get("/steps/locals/one-write")))
        assert status == b"HTTP/1.1 200 OK"
        assert int(fields[b"content-length"]) == len(got)
        assert got == stored


def test_a_chunked_object_download_arrives_whole(server):
    data = bytes(range(256)) * 80  # 20 KiB
    sha = hashlib.sha256(data).hexdigest()
    assert server.request("PUT", f"/objects/{sha}", data, {"Content-Type": "application/octet-stream"})[0] == 200
    for _ in range(ROUNDS):
        status, fields, body = split(one_read(server.socket, get(f"/objects/{sha}")))
        assert status == b"HTTP/1.1 200 OK"
        assert fields[b"transfer-encoding"] == b"chunked"
        assert body == b"%X\r\n%s\r\n0\r\n\r\n" % (len(data), data)


def test_a_response_without_a_body_gets_its_head_at_once(server):
    put = b"PUT /user-meta/one-write HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nv"
    for _ in range(ROUNDS):
        status, fields, body = split(one_read(server.socket, put))
        assert status == b"HTTP/1.1 200 OK" and fields[b"content-length"] == b"0" and body == b""
    conn = server.client()  # and the connection carries the next request
    assert [conn.call("PUT", "/user-meta/one-write", b"w")[0] for _ in range(3)] == [200, 200, 200]
    conn.close()


def test_a_large_file_still_arrives_whole(server):
    data = b"pvcore" * 200_000  # 1.2 MB: the head with its first part, then sendfile
    sha = hashlib.sha256(data).hexdigest()
    assert server.request("PUT", f"/objects/{sha}", data, {"Content-Type": "application/octet-stream"})[0] == 200
    status, headers, body = server.request("GET", f"/objects/{sha}")
    assert status == 200 and body == data
    conn = server.client()
    conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"  # close-delimited, no chunks
    status, headers, body = conn.call("GET", f"/objects/{sha}")
    assert status == 200 and body == data


def test_sigint_inside_a_thread_pool_submit_does_not_hang_the_worker():
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from pvcore.testing import returns_within
    from pvcore.worker import PvThreadWorker

    worker = PvThreadWorker.__new__(PvThreadWorker)
    worker.cfg = SimpleNamespace(worker_int=lambda w: None)
    worker.tpool = ThreadPoolExecutor(1)
    exited = []

    def quit_inside_submit():
        with worker.tpool._shutdown_lock:  # as tpool.submit() holds it
            try:
                worker.handle_quit(2, None)
            except SystemExit:
                exited.append(True)

    assert returns_within(quit_inside_submit) and exited and worker.alive is False


def test_an_answer_of_up_to_256_kib_is_queued_whole_for_a_reader_that_has_not_read(server):
    """A Unix socket's send buffer (about 208 KiB with its per-packet overhead) once took
    part of a 250 KB answer; the rest waited until the reader drained most of it, so a
    client reading what had arrived and stopping (``pvtx begin``) stored a cut state."""
    import fcntl
    import struct
    import termios
    import time

    data = bytes(range(256)) * 1000  # 256,000 bytes, under ONE_WRITE
    sha = hashlib.sha256(data).hexdigest()
    assert server.request("PUT", f"/objects/{sha}", data, {"Content-Type": "application/octet-stream"})[0] == 200
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(server.socket)
        sock.sendall(get(f"/objects/{sha}"))
        select.select([sock], [], [], 10)
        deadline, queued = time.monotonic() + 5, 0
        while time.monotonic() < deadline and queued <= len(data):
            time.sleep(0.05)  # nothing read yet: how much has pvcore managed to queue?
            queued = struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"))[0]
        assert queued > len(data), f"only {queued} bytes of a {len(data)}-byte answer were sent"
