"""Black-box: the real gunicorn on a Unix socket, as clients see it."""
import json
import os
import shutil
import stat
import subprocess

import pytest

from pvcore.testing import GunicornServer, child_pids, raw_request, short_tempdir, wait_until

pytestmark = pytest.mark.gunicorn


@pytest.fixture(scope="module")
def server():
    srv = GunicornServer(short_tempdir(), {})
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(srv.base, ignore_errors=True)


def test_buildinfo_is_plain_text(server):
    status, headers, body = server.request("GET", "/buildinfo")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    # The test kit's servers are laptops (demo values): the manifest of what runs.
    assert body.startswith(b"pvcore ")


def test_unknown_endpoint(server):
    status, headers, body = server.request("GET", "/nope?x=1")
    assert status == 400
    assert body == b'{"Error":"unknown endpoint: /nope?x=1"}'
    assert headers["Content-Type"] == "application/json"


def test_http10_without_keepalive_is_answered_and_closed(server):
    reply = raw_request(server.socket, b"GET /buildinfo HTTP/1.0\r\nHost: localhost\r\n\r\n", timeout=5)
    assert reply.startswith(b"HTTP/1.0 200 ")
    assert b"\r\nConnection: close\r\n" in reply


def test_pvcurl_style_request_with_half_close(server):
    # pvcurl: HTTP/1.0, JSON content type and a Content-Length on every request, nc -N half-close
    request = (b"PUT /nope HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n"
               b"Content-Length: 2\r\n\r\n{}")
    reply = raw_request(server.socket, request, half_close=True, timeout=5)
    assert reply.startswith(b"HTTP/1.0 400 ")
    assert reply.endswith(b'{"Error":"unknown endpoint: /nope"}')


def test_keepalive_serves_several_requests_on_one_connection(server):
    conn = server.client()
    for _ in range(3):
        assert conn.call("GET", "/buildinfo")[0] == 200
    sock = conn.sock
    assert conn.call("GET", "/nope")[0] == 400
    assert conn.sock is sock
    conn.close()


def test_socket_is_0660(server):
    mode = os.stat(server.socket).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660


def test_curl_over_the_socket(server):
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is required (make test installs it)")
    out = subprocess.run([curl, "-s", "-w", "\n%{http_code}", "--unix-socket", server.socket, "http://localhost/nope"],
                         capture_output=True, check=True, text=True).stdout
    assert out == '{"Error":"unknown endpoint: /nope"}\n400'


def test_plugins_introspection_lists_builtins_with_routes(server):
    status, plugins = server.client().json("GET", "/_pvcore/plugins")
    assert status == 200
    by_name = {p["name"]: p for p in plugins}
    assert by_name["pv_buildinfo"]["routes"] == ["GET /buildinfo"]
    assert by_name["pv_buildinfo"]["distribution"] == "pvcore"


def _access_events(server, path, until=None):
    """The access events for ``path``; with ``until``, first wait for one matching it
    (gunicorn writes the line after the reply has gone out)."""
    def events():
        return [e for e in server.log_events() if e.get("logger") == "gunicorn.access" and e.get("path") == path]

    if until is not None:
        wait_until(lambda: any(until(e) for e in events()), message=f"an access event for {path}")
    return events()


def test_every_log_line_is_json_including_gunicorn_and_access(server):
    server.request("DELETE", "/buildinfo", headers={"X-Request-ID": "json-1"})  # a write: logged at info
    _access_events(server, "/buildinfo", until=lambda e: e.get("request_id") == "json-1")
    events = [json.loads(line) for line in server.log_text().splitlines() if line.strip()]
    assert {"gunicorn.error", "gunicorn.access"} <= {e.get("logger") for e in events}


def test_access_line_is_fields_not_a_text_line(server):
    status, headers, _ = server.request("DELETE", "/buildinfo", headers={"X-Request-ID": "req-42"})
    mine = lambda e: e.get("request_id") == "req-42"  # noqa: E731
    (event,) = [e for e in _access_events(server, "/buildinfo", until=mine) if mine(e)]
    assert event["event"] == "http_request" and event["level"] == "info"
    assert event["method"] == "DELETE" and event["status"] == status == 400
    assert event["bytes"] == int(headers["Content-Length"]) > 0
    assert event["caller"] == "_pv_"
    assert isinstance(event["duration_ms"], float) and event["duration_ms"] >= 0


def test_routine_reads_are_not_logged_at_info(server):
    # pv-xconnect asks for the graph every 5 s forever: no line each time.
    for _ in range(3):
        assert server.request("GET", "/buildinfo")[0] == 200
    server.request("DELETE", "/buildinfo", headers={"X-Request-ID": "after-reads"})
    events = _access_events(server, "/buildinfo", until=lambda e: e.get("request_id") == "after-reads")
    assert "GET" not in [e["method"] for e in events]


def test_reads_are_logged_at_debug_level(start_gunicorn):
    srv = start_gunicorn(env={"PVCORE_LOG_LEVEL": "debug"})
    srv.request("GET", "/buildinfo", headers={"X-Request-ID": "read-1"})
    mine = lambda e: e.get("request_id") == "read-1"  # noqa: E731
    (event,) = [e for e in _access_events(srv, "/buildinfo", until=mine) if mine(e)]
    assert event["level"] == "debug" and event["method"] == "GET" and event["status"] == 200


def test_sigterm_removes_the_socket_and_leaves_no_child(start_gunicorn):
    srv = start_gunicorn(demo=True)
    worker = srv.worker_pid()
    assert worker
    assert srv.stop() == 0
    assert not os.path.exists(srv.socket)
    assert not os.path.exists(f"/proc/{worker}")
    assert child_pids(srv.proc.pid) == []


def test_a_bad_setting_fails_the_boot_with_a_clear_message(start_gunicorn):
    with pytest.raises(AssertionError) as info:
        start_gunicorn(env={"PVCORE_STOP_TIMEOUT": "soon"}, timeout=20)
    assert "PVCORE_STOP_TIMEOUT" in str(info.value)


def test_transfer_encoding_identity_is_framed_by_content_length(server):
    # what upstream's `pvcontrol objects put` sends
    request = (b"PUT /nope HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: identity\r\n"
               b"Content-Type: application/octet-stream\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
    reply = raw_request(server.socket, request, timeout=5)
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert reply.endswith(b'{"Error":"unknown endpoint: /nope"}')


def test_malformed_requests_get_the_framework_error_body(server):
    for request in (b"GARBAGE\r\n\r\n",
                    b"GET /buildinfo HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n",
                    b"PUT /nope HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked, chunked\r\n\r\n"):
        reply = raw_request(server.socket, request, timeout=5)
        assert reply.startswith(b"HTTP/1.1 4") or reply.startswith(b"HTTP/1.1 5"), reply
        assert b"Content-Type: text/html" in reply
        assert reply.endswith(b'{"Error": "Unsupported protocol"}'), reply


def test_chunked_request_bodies_are_read(server):
    request = (b"PUT /nope HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               b"5\r\nhello\r\n0\r\n\r\n")
    reply = raw_request(server.socket, request, timeout=5)
    assert reply.endswith(b'{"Error":"unknown endpoint: /nope"}')


def test_a_foreign_host_is_dropped_without_an_answer(server):
    assert raw_request(server.socket, b"GET /buildinfo HTTP/1.1\r\nHost: evil.example\r\n\r\n", timeout=5) == b""
    assert raw_request(server.socket, b"GET /buildinfo HTTP/1.1\r\nHost: LOCALHOST\r\n\r\n", timeout=5) == b""
    for host in (b"localhost", b"localhost:8080", b""):
        reply = raw_request(server.socket, b"GET /buildinfo HTTP/1.0\r\nHost: %s\r\n\r\n" % host, timeout=5)
        assert reply.startswith(b"HTTP/1.0 200 "), host
    reply = raw_request(server.socket, b"GET /buildinfo HTTP/1.0\r\n\r\n", timeout=5)
    assert reply.startswith(b"HTTP/1.0 200 ")


def test_an_absolute_uri_with_a_foreign_host_is_dropped_like_a_foreign_host_header(server):
    for target in (b"http://evil/steps", b"http://evil:80/buildinfo", b"http://localhost@evil/buildinfo",
                   b"http://LOCALHOST/buildinfo"):
        request = b"GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % target
        assert raw_request(server.socket, request, timeout=5) == b"", target
    # the URI's host wins over the Host header, as RFC 9112 and libevent choose it
    for target, host in ((b"http://localhost/buildinfo", b"localhost"), (b"http://localhost:1/buildinfo", b"evil")):
        request = b"GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (target, host)
        assert raw_request(server.socket, request, timeout=5).startswith(b"HTTP/1.0 200 "), target


def test_an_unlisted_method_is_400_on_a_templated_route_and_501_elsewhere(server):
    for method in (b"PATCH", b"OPTIONS", b"BREW"):
        request = method + b" /daemons/pv-xconnect HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}"
        reply = raw_request(server.socket, request + b"GET /buildinfo HTTP/1.1\r\nConnection: close\r\n\r\n", timeout=5)
        head, _, rest = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), method
        assert rest.startswith(b'{"Error":"Method not supported for this endpoint"}HTTP/1.1 200 '), method
        for path in (b"/containers", b"/nope"):
            reply = raw_request(server.socket, method + b" " + path + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", timeout=5)
            assert reply.startswith(b"HTTP/1.1 501 "), (method, path)
            assert reply.endswith(b'{"Error": "Unsupported protocol"}'), (method, path)


def test_names_that_are_not_utf8_are_refused_not_decoded_lossily(server):
    refused = b'{"Error":"Request path is not valid UTF-8"}'
    for method, path, body in (("PUT", "/user-meta/%FF%FE", b"one"), ("PUT", "/user-meta/%FE%FF", b"two"),
                               ("PUT", "/device-meta/a%C0%AF", b"x"), ("PUT", "/steps/locals/%FF%FE", b"{}"),
                               ("GET", "/steps/%FE%FF/progress", None), ("GET", "/objects/%FF", None)):
        status, headers, reply = server.request(method, path, body)
        assert (status, reply) == (400, refused), path
        assert headers["Content-Type"] == "application/json"
    status, _, listing = server.request("GET", "/user-meta")
    assert status == 200 and json.loads(listing) == {}
    # valid UTF-8 is a name like any other
    assert server.request("PUT", "/user-meta/caf%C3%A9", b"ok")[0] == 200
    assert json.loads(server.request("GET", "/user-meta")[2]) == {"café": "ok"}
    assert server.request("DELETE", "/user-meta/caf%C3%A9")[0] == 200


@pytest.mark.parametrize("target", ["/user-meta/a?b", "/user-meta/a?b=1", "/user-meta/a?", "/user-meta/a#b"])
def test_a_name_is_exactly_what_the_client_sent(server, target):
    # Cut at ? or #, the name would be another one: refused, nothing stored.
    assert server.request("PUT", "/user-meta/a", b"first")[0] == 200
    request = (f"PUT {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
               f"Content-Length: 6\r\n\r\nsecond").encode()
    reply = raw_request(server.socket, request, timeout=5)
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert reply.endswith(b'{"Error":"Request has a query string or fragment in a name"}')
    assert json.loads(server.request("GET", "/user-meta")[2])["a"] == "first"
