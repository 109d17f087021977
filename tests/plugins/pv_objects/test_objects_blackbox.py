"""Objects over a real gunicorn: seed tests 11-16 and the crash/concurrency/memory cases."""
import hashlib
import json
import os
import socket
import time

import pytest

from objects_helpers import blob, objects_dir
from pvcore.testing import raw_request, wait_until

pytestmark = pytest.mark.gunicorn

MiB = 1 << 20


def listed(server):
    status, data = server.client().json("GET", "/objects")
    assert status == 200
    return {entry["sha256"]: entry["size"] for entry in data}


def test_seed_11_objects_list(demo_server):
    status, data = demo_server.client().json("GET", "/objects")
    assert status == 200
    assert isinstance(data, list) and len(data) >= 2
    for entry in data:
        assert set(entry) == {"sha256", "size"}
        assert len(entry["sha256"]) == 64 and entry["size"].isdigit()


def test_seed_12_put_small_file(demo_server):
    data = b"hello pvctrl test\n"
    sha = hashlib.sha256(data).hexdigest()
    status, _, body = demo_server.request("PUT", "/objects/" + sha, data)
    assert (status, body) == (200, b"")
    assert listed(demo_server)[sha] == str(len(data))


def test_seed_13_14_two_mib_chunked_upload_and_download(demo_server):
    data = os.urandom(2 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    conn = demo_server.client()
    pieces = (data[i:i + 300000] for i in range(0, len(data), 300000))
    conn.request("PUT", "/objects/" + sha, body=pieces, encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (200, b"")
    assert listed(demo_server)[sha] == str(len(data))
    conn.request("GET", "/objects/" + sha)
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "application/octet-stream"
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.getheader("Content-Length") is None
    assert hashlib.sha256(resp.read()).hexdigest() == sha


def test_download_over_http_1_0_is_close_delimited(demo_server):
    data, sha = blob("http/1.0 download", 5000)
    demo_server.request("PUT", "/objects/" + sha, data)
    raw = raw_request(demo_server.socket, f"GET /objects/{sha} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200")
    assert b"content-length" not in head.lower() and b"chunked" not in head.lower()
    assert body == data


def test_seed_15_bad_hash_is_422_and_leaves_no_file(demo_server):
    before = set(os.listdir(objects_dir(demo_server)))
    status, _, body = demo_server.request("PUT", "/objects/" + "a" * 64, b"checksum test\n")
    assert status == 422
    assert json.loads(body) == {"Error": "Object has bad checksum"}
    assert set(os.listdir(objects_dir(demo_server))) == before
    assert "a" * 64 not in listed(demo_server)


def test_seed_16_duplicate_upload_is_idempotent(demo_server):
    data, sha = blob("duplicate test\n")
    assert demo_server.request("PUT", "/objects/" + sha, data)[0] == 200
    assert demo_server.request("PUT", "/objects/" + sha, data)[0] == 200
    with open(os.path.join(objects_dir(demo_server), sha), "rb") as fh:
        assert fh.read() == data


def test_bad_object_names_and_missing_object(demo_server):
    for name in ("a" * 63, "A" * 64):
        status, _, body = demo_server.request("GET", "/objects/" + name)
        assert (status, json.loads(body)) == (400, {"Error": "Request has bad object name"}), name
    # A query string is never cut off a name (docs/protocol.md §2).
    status, _, body = demo_server.request("GET", "/objects/" + "a" * 64 + "?x=1")
    assert (status, json.loads(body)) == (400, {"Error": "Request has a query string or fragment in a name"})
    status, _, body = demo_server.request("GET", "/objects/" + "f" * 64)
    assert (status, json.loads(body)) == (400, {"Error": "Request has bad object name"})


def test_two_concurrent_uploads_of_the_same_sha_both_succeed(demo_server):
    data = os.urandom(4 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    conns = [demo_server.client(), demo_server.client()]
    for conn in conns:
        conn.putrequest("PUT", "/objects/" + sha)
        conn.putheader("Content-Length", str(len(data)))
        conn.endheaders()
        conn.send(data[:MiB])
    directory = objects_dir(demo_server)
    # Both uploads are in flight, each in its own temp file.
    wait_until(lambda: len([n for n in os.listdir(directory) if n.startswith(sha + ".")]) == 2,
               message="two temp files")
    for conn in conns:
        conn.send(data[MiB:])
    for conn in conns:
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"")
    assert [n for n in os.listdir(directory) if n.startswith(sha)] == [sha]
    with open(os.path.join(directory, sha), "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == sha


def _memory(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                fields[key] = int(value.split()[0]) * 1024
    return fields


# 64 MiB in `make test`; the 1 GiB upload of issue 4 in `make test-long`.
BIG_MIB = 1024 if os.environ.get("PVCORE_TEST_LONG") else 64


def test_big_upload_and_download_do_not_grow_worker_memory(demo_server):
    chunk = os.urandom(MiB)
    digest = hashlib.sha256()
    for _ in range(BIG_MIB):
        digest.update(chunk)
    sha = digest.hexdigest()
    pid = demo_server.worker_pid()
    before = _memory(pid)
    conn = demo_server.client()
    conn.putrequest("PUT", "/objects/" + sha)
    conn.putheader("Content-Length", str(BIG_MIB * MiB))
    conn.endheaders()
    for _ in range(BIG_MIB):
        conn.send(chunk)
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (200, b"")
    conn.request("GET", "/objects/" + sha)
    resp = conn.getresponse()
    got = hashlib.sha256()
    while True:
        piece = resp.read(MiB)
        if not piece:
            break
        got.update(piece)
    assert got.hexdigest() == sha
    after = _memory(pid)
    assert after["VmHWM"] - before["VmHWM"] < 16 * MiB, (before, after)
    assert after["VmRSS"] - before["VmRSS"] < 16 * MiB, (before, after)


def test_gc_over_the_socket(demo_server):
    directory = objects_dir(demo_server)
    _, state = demo_server.client().json("GET", "/steps/0")
    demo_objects = {v for v in state.values() if isinstance(v, str) and len(v) == 64}
    assert demo_objects and demo_objects <= set(listed(demo_server))
    (old, old_sha), (new, new_sha) = blob("old unreferenced", 4321), blob("fresh unreferenced", 1234)
    for data, sha in ((old, old_sha), (new, new_sha)):
        assert demo_server.request("PUT", "/objects/" + sha, data)[0] == 200
    then = time.time() - 3600
    os.utime(os.path.join(directory, old_sha), (then, then))
    for sha in demo_objects:  # the demo revision's objects are old too, but referenced
        os.utime(os.path.join(directory, sha), (then, then))
    status, _, body = demo_server.request("POST", "/storage/gc")
    assert status == 200
    assert body.startswith(b'{"reclaimed": ')
    assert json.loads(body)["reclaimed"] >= len(old)
    remaining = set(listed(demo_server))
    assert old_sha not in remaining
    assert new_sha in remaining
    assert demo_objects <= remaining


def test_kill_9_mid_upload_leaves_nothing_at_the_final_path(start_gunicorn):
    server = start_gunicorn(demo=True)
    data = os.urandom(2 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    directory = objects_dir(server)
    conn = server.client()
    conn.putrequest("PUT", "/objects/" + sha)
    conn.putheader("Content-Length", str(len(data)))
    conn.endheaders()
    conn.send(data[:MiB + 12345])
    wait_until(lambda: any(n.startswith(sha + ".") for n in os.listdir(directory)), message="upload temp file")
    old_worker = server.worker_pid()
    os.kill(old_worker, 9)
    conn.close()
    wait_until(lambda: server.worker_pid() not in (None, old_worker), message="a new worker")
    server.wait_healthy()
    assert not os.path.exists(os.path.join(directory, sha))
    wait_until(lambda: not any(n.startswith(sha) for n in os.listdir(directory)), message="temp file swept")
    assert sha not in listed(server)
    # The same upload now succeeds.
    assert server.request("PUT", "/objects/" + sha, data)[0] == 200


def test_out_of_space_is_507_over_the_socket(start_gunicorn):
    server = start_gunicorn(env={"PVCORE_STORAGE_RESERVED_PERCENT": "100"})
    data, sha = blob("no room", 10000)
    status, _, body = server.request("PUT", "/objects/" + sha, data)
    assert (status, json.loads(body)) == (507, {"Error": "Not enough disk space available"})
    assert os.listdir(objects_dir(server)) == []
    # Refused on its Content-Length, before the body: the connection closes,
    # and the client simply opens another.
    conn = server.client()
    status, headers, _ = conn.call("PUT", "/objects/" + sha, data)
    assert (status, headers["Connection"]) == (507, "close")
    assert conn.call("GET", "/objects")[0] == 200


def test_an_oversize_declared_length_is_507_at_once_without_100_continue(start_gunicorn):
    server = start_gunicorn(env={"PVCORE_STORAGE_RESERVED_PERCENT": "100"})
    sha = "ab" * 32
    no_room = b'{"Error":"Not enough disk space available"}'
    for expect in (b"Expect: 100-continue\r\n", b""):
        # Headers only: the body never comes, so an answer proves nothing was waited for.
        head = b"PUT /objects/%s HTTP/1.1\r\nHost: localhost\r\n%sContent-Length: %d\r\n\r\n" % (
            sha.encode(), expect, 10 * 1 << 30)
        started = time.monotonic()
        reply = raw_request(server.socket, head, timeout=10)  # returns only once the server closed
        assert time.monotonic() - started < 5
        assert reply.startswith(b"HTTP/1.1 507 "), reply
        assert b"100 Continue" not in reply and b"\r\nConnection: close\r\n" in reply
        assert reply.endswith(no_room)
    # A client that sends its whole body before reading (pvtx) still gets the
    # answer: the server drains the declared body instead of closing on it.
    data, sha = blob("naive", 24 << 20)
    status, headers, body = server.request("PUT", "/objects/" + sha, data)
    assert (status, headers["Connection"], body) == (507, "close", no_room)
    assert os.listdir(objects_dir(server)) == []


def test_100_continue_is_sent_when_the_upload_is_admitted(demo_server):
    data, sha = blob("go ahead", 3000)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(demo_server.socket)
        sock.sendall(b"PUT /objects/%s HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % (sha.encode(), len(data)))
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(data)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    assert listed(demo_server)[sha] == str(len(data))
