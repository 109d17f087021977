"""pvcore_client in-process: keep-alive, reconnects, streaming, socket lookup."""

from __future__ import annotations

import hashlib
import io
import os
import socket

import pytest

from pvcore_client import sockets as client_mod
from pvcore_client import CHUNK_SIZE, NoResponseError, PvClient, default_socket_path


def test_requests_share_one_connection(pv):
    pv.reply("GET", "/containers", body=b"[]")
    pv.reply("GET", "/groups", body=b'[{"name":"app"}]')
    pv.reply("PUT", "/user-meta/k", body=b"")
    with PvClient(pv.path) as c:
        assert c.request("GET", "/containers").body == b"[]"
        assert c.request("GET", "/groups").json() == [{"name": "app"}]
        assert c.request("PUT", "/user-meta/k", body="v").status == 200
    assert pv.connections == 1
    assert [r.connection for r in pv.requests] == [1, 1, 1]
    assert pv.requests[2].body == b"v"


def test_default_headers(pv):
    pv.reply("GET", "/x", body=b"")
    pv.reply("PUT", "/y", body=b"")
    with PvClient(pv.path) as c:
        c.request("GET", "/x")
        c.request("PUT", "/y", body=b"raw", headers={"content-type": "text/plain"})
    get, put = pv.requests
    assert get.header("Host") == "localhost"
    assert get.header("Content-Type") == "application/json"
    assert get.header("Content-Length") == "0"
    assert put.headers.get_all("Content-Type") == ["text/plain"]
    assert put.header("Content-Length") == "3"


def test_error_response_is_returned_not_raised(pv):
    pv.reply("GET", "/daemons/x", status=404, body=b'{"Error":"Daemon not found"}')
    with PvClient(pv.path) as c:
        resp = c.request("GET", "/daemons/x")
    assert (resp.status, resp.ok, resp.json()) == (404, False, {"Error": "Daemon not found"})


def test_reconnects_after_server_closed_idle_connection(pv):
    pv.reply("GET", "/groups", body=b"[]")
    with PvClient(pv.path) as c:
        assert c.request("GET", "/groups").status == 200
        pv.close_connections()
        assert c.request("GET", "/groups").body == b"[]"
    assert pv.connections == 2
    assert len(pv.requests) == 2


def test_retries_once_when_close_is_noticed_late(pv, monkeypatch):
    pv.reply("POST", "/signal", body=b"")
    with PvClient(pv.path) as c:
        # Skip the idle check so the send itself hits the closed socket.
        monkeypatch.setattr(c, "_idle_connection_dead", lambda: False)
        assert c.request("POST", "/signal", b"{}").status == 200
        pv.close_connections()
        assert c.request("POST", "/signal", b"{}").status == 200
    assert pv.connections == 2
    assert [r.body for r in pv.requests] == [b"{}", b"{}"]


def test_fresh_connection_failure_raises(pv):
    pv.reply("GET", "/x", pv.Reply(drop=True))
    with PvClient(pv.path) as c:
        with pytest.raises(NoResponseError):
            c.request("GET", "/x")
    assert len(pv.requests) == 1  # not retried on a fresh connection


def test_missing_socket_raises(tmp_path):
    with pytest.raises(NoResponseError):
        PvClient(str(tmp_path / "none")).request("GET", "/")


class _CountingReader(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.reads = []

    def read(self, size=-1):
        self.reads.append(size)
        return super().read(size)


def test_put_file_streams_in_chunks(pv):
    data = os.urandom(5 * CHUNK_SIZE + 3)
    pv.reply("PUT", "/objects/s", body=b"")
    src = _CountingReader(data)
    seen = []
    with PvClient(pv.path) as c:
        resp = c.put_file("/objects/s", src, len(data), progress=lambda s, t: seen.append((s, t)),
                          headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 200
    assert all(0 < n <= CHUNK_SIZE for n in src.reads)
    assert len(src.reads) == 6
    assert seen[0] == (0, len(data)) and seen[-1] == (len(data), len(data))
    [req] = pv.requests
    assert req.header("Content-Length") == str(len(data))
    assert hashlib.sha256(req.body).digest() == hashlib.sha256(data).digest()


def test_put_file_short_input(pv):
    with PvClient(pv.path) as c:
        with pytest.raises(ValueError, match="after 4 of 10"):
            c.put_file("/objects/s", io.BytesIO(b"four"), 10)


def test_stream_get_only_writes_success(pv):
    pv.reply("GET", "/objects/ok", body=b"x" * 10000, chunked=True)
    pv.reply("GET", "/objects/bad", status=400, body=b'{"Error":"Request has bad object name"}')
    good, bad = io.BytesIO(), io.BytesIO()
    with PvClient(pv.path) as c:
        ok = c.stream_get("/objects/ok", good, chunk=999)
        ko = c.stream_get("/objects/bad", bad)
    assert (ok.status, ok.streamed, good.getvalue()) == (200, 10000, b"x" * 10000)
    assert (ko.status, ko.body, bad.getvalue()) == (400, b'{"Error":"Request has bad object name"}', b"")
    assert pv.connections == 1


def test_listing_helpers(pv):
    pv.reply("GET", "/objects", body=b'[{"sha256":"a","size":"1"}]')
    pv.reply("GET", "/steps", status=500, body=b'{"Error":"x"}')
    with PvClient(pv.path) as c:
        assert c.objects() == [{"sha256": "a", "size": "1"}]
        with pytest.raises(ValueError, match="500"):
            c.steps()


# -- default_socket_path -------------------------------------------------------

def _bind(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


@pytest.fixture
def no_upstream(monkeypatch, short_tmp):
    """Point upstream's fixed locations into the temp dir (absent)."""
    paths = (str(short_tmp / "run-pv-ctrl"), str(short_tmp / "pv-pv-ctrl"))
    monkeypatch.setattr(client_mod, "_UPSTREAM_SOCKETS", paths)
    return paths


def test_env_wins(short_tmp, no_upstream):
    sock = _bind(short_tmp / "var" / "run" / "pv-ctrl")
    try:
        assert default_socket_path({"PVCONTROL_SOCKET": "/x/y"}, cwd=str(short_tmp)) == "/x/y"
    finally:
        sock.close()


def test_checkout_socket_found_from_subdirectory(short_tmp, no_upstream):
    (short_tmp / "setup.cfg").write_text("")
    sock = _bind(short_tmp / "var" / "run" / "pv-ctrl")
    deep = short_tmp / "a" / "b"
    deep.mkdir(parents=True)
    try:
        expected = str(short_tmp / "var" / "run" / "pv-ctrl")
        assert default_socket_path({}, cwd=str(deep)) == expected
        assert default_socket_path({}, cwd=str(short_tmp)) == expected
    finally:
        sock.close()


def test_socket_in_cwd_without_setup_cfg(short_tmp, no_upstream):
    sock = _bind(short_tmp / "var" / "run" / "pv-ctrl")
    try:
        assert default_socket_path({}, cwd=str(short_tmp)) == str(short_tmp / "var" / "run" / "pv-ctrl")
        # A parent that is not a checkout is not searched.
        (short_tmp / "sub").mkdir()
        assert default_socket_path({}, cwd=str(short_tmp / "sub")) == "/pantavisor/pv-ctrl"
    finally:
        sock.close()


def test_regular_file_is_ignored(short_tmp, no_upstream):
    (short_tmp / "setup.cfg").write_text("")
    (short_tmp / "var" / "run").mkdir(parents=True)
    (short_tmp / "var" / "run" / "pv-ctrl").write_text("not a socket")
    assert default_socket_path({}, cwd=str(short_tmp)) == "/pantavisor/pv-ctrl"


def test_upstream_order(short_tmp, no_upstream):
    first, second = no_upstream
    sock2 = _bind(short_tmp / "pv-pv-ctrl")
    try:
        assert default_socket_path({}, cwd="/") == second
        sock1 = _bind(short_tmp / "run-pv-ctrl")
        try:
            assert default_socket_path({}, cwd="/") == first
        finally:
            sock1.close()
    finally:
        sock2.close()


class _Pipe(io.BytesIO):
    """A non-seekable source, like stdin: a failed send cannot be repeated."""

    def seekable(self) -> bool:
        return False


def test_idle_close_detected_before_unrepeatable_upload(pv):
    pv.reply("GET", "/objects", body=b"[]")
    pv.reply("PUT", "/objects/s", body=b"")
    with PvClient(pv.path) as c:
        c.request("GET", "/objects")
        pv.close_connections()
        resp = c.put_file("/objects/s", _Pipe(b"0123456789"), 10)
    assert resp.status == 200
    assert pv.requests[-1].body == b"0123456789"
    assert [r.connection for r in pv.requests] == [1, 2]
