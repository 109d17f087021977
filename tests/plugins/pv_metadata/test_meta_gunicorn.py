"""Black-box metadata tests over a real gunicorn on the demo device (seed tests 8–10)."""
import json

import pytest

from pvcore.testing import wait_until

pytestmark = pytest.mark.gunicorn


@pytest.fixture
def server(start_gunicorn):
    return start_gunicorn(demo=True)


def listing(conn, path):
    status, headers, body = conn.call("GET", path)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    return json.loads(body)


def test_seed_8_device_meta_crud(server):
    conn = server.client()
    initial = listing(conn, "/device-meta")
    assert isinstance(initial, dict)
    assert initial["pantavisor.arch"].count("/") == 2  # auto-populated
    wait_until(lambda: listing(conn, "/device-meta").get("pantavisor.mode") == "local")  # pv_commands' fact
    assert conn.call("PUT", "/device-meta/test-key", b"test-value-123")[0] == 200
    assert listing(conn, "/device-meta")["test-key"] == "test-value-123"
    assert conn.call("PUT", "/device-meta/test-key", b"updated-value-456")[0] == 200
    assert listing(conn, "/device-meta")["test-key"] == "updated-value-456"
    status, _, body = conn.call("DELETE", "/device-meta/test-key")
    assert (status, body) == (200, b"")
    assert "test-key" not in listing(conn, "/device-meta")


def test_seed_9_user_meta_crud(server):
    conn = server.client()
    assert listing(conn, "/user-meta") == {}
    assert conn.call("PUT", "/user-meta/my-key", b"my-value")[0] == 200
    assert listing(conn, "/user-meta") == {"my-key": "my-value"}
    assert conn.call("PUT", "/user-meta/my-key", b"new-value")[0] == 200
    assert listing(conn, "/user-meta")["my-key"] == "new-value"
    assert conn.call("DELETE", "/user-meta/my-key")[0] == 200
    assert listing(conn, "/user-meta") == {}


def test_seed_10_delete_missing_keys(server):
    status, _, body = server.request("DELETE", "/device-meta/nonexistent-key-xyz")
    assert (status, body) == (404, b'{"Error":"Device meta does not exist"}')
    status, _, body = server.request("DELETE", "/user-meta/nonexistent-key-xyz")
    assert (status, body) == (404, b'{"Error":"User meta does not exist"}')


def test_limits_and_bad_requests(server):
    conn = server.client()
    assert conn.call("PUT", "/user-meta/big", b"x" * 4096)[0] == 200
    assert conn.call("PUT", "/user-meta/big", b"x" * 4097)[:3:2] == (507, b'{"Error":"Not enough disk space available"}')
    assert conn.call("PUT", "/user-meta/empty", b"")[:3:2] == (400, b'{"Error":"Cannot add or update user meta"}')
    assert conn.call("PUT", "/device-meta/%2E%2E", b"v")[:3:2] == (400, b'{"Error":"Cannot add or update device meta"}')
    # A chunked upload carries no Content-Length: refused as upstream does.
    conn.putrequest("PUT", "/user-meta/chunked")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"3\r\nabc\r\n0\r\n\r\n")
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (400, b'{"Error":"Cannot add or update user meta"}')
    assert set(listing(conn, "/user-meta")) == {"big"}


def test_escaping_round_trips(server):
    conn = server.client()
    value = 'say "hi"\\n\nnext line\ttab'
    assert conn.call("PUT", "/user-meta/we%22ird%5Ckey", value.encode())[0] == 200
    assert conn.call("PUT", "/user-meta/obj", b'{"k": ["v", 1]}')[0] == 200
    assert listing(conn, "/user-meta") == {"obj": {"k": ["v", 1]}, 'we"ird\\key': value}


def test_values_survive_a_gunicorn_restart(server):
    conn = server.client()
    for key, value in (("one", b"1"), ("two", b'[2]'), ("three", b"3")):
        assert conn.call("PUT", "/user-meta/" + key, value)[0] == 200
    assert conn.call("PUT", "/device-meta/persisted", b"yes")[0] == 200
    assert conn.call("DELETE", "/device-meta/pantavisor.mode")[0] == 200
    conn.close()
    server.stop()
    server.start()
    conn = server.client()
    status, _, body = conn.call("GET", "/user-meta")
    assert body == b'{"three":"3","two":[2],"one":"1"}'
    device = listing(conn, "/device-meta")
    assert device["persisted"] == "yes"
    wait_until(lambda: listing(conn, "/device-meta").get("pantavisor.mode") == "local")  # its owner re-publishes it
