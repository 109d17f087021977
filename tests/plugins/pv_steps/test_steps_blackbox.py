"""Steps over a real gunicorn: seed tests 4, 5, 6, 29, 30 and the traversal/GC cases."""
import hashlib
import io
import json
import os
import tarfile
import time

import pytest

from pvcore.testing import raw_request
from steps_helpers import make_rev, minimal_state, trail

pytestmark = pytest.mark.gunicorn

NOT_FOUND = {"Error": "Resource does not exist"}


def names(server):
    status, data = server.client().json("GET", "/steps")
    assert status == 200
    return [entry["name"] for entry in data]


def test_seed_4_steps_list(demo_server):
    status, data = demo_server.client().json("GET", "/steps")
    assert status == 200
    assert isinstance(data, list)
    assert data[0]["name"] == "0"
    assert set(data[0]) == {"name", "date", "commitmsg", "progress"}


def test_seed_5_get_current_and_zero(demo_server):
    status, current = demo_server.client().json("GET", "/steps/current")
    assert status == 200
    status, zero = demo_server.client().json("GET", "/steps/0")
    assert status == 200
    assert current == zero
    assert current["#spec"] == "pantavisor-service-system@1"
    assert any(key.endswith("/run.json") for key in current)


def test_seed_6_progress(demo_server):
    status, progress = demo_server.client().json("GET", "/steps/0/progress")
    assert status == 200
    assert progress["status"] == "DONE"


def test_seed_29_tarball_is_422_and_not_listed(demo_server):
    state = demo_server.request("GET", "/steps/current")[2]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("state.json")
        info.size = len(state)
        tar.addfile(info, io.BytesIO(state))
    status, _, body = demo_server.request("PUT", "/steps/locals/test-rev", buf.getvalue())
    assert status == 422
    assert json.loads(body) == {"Error": "Parser: State JSON has bad format"}
    assert "locals/test-rev" not in names(demo_server)


def test_seed_30_put_state_json_with_commit_message(demo_server):
    conn = demo_server.client()
    state = conn.call("GET", "/steps/current")[2]
    assert conn.call("PUT", "/steps/locals/test-put-rev", state, {"Content-Type": "application/json"})[0::2] == (
        200, b"")
    assert conn.call("PUT", "/steps/locals/test-put-rev/commitmsg", b"test put")[0::2] == (200, b"")
    status, listing = conn.json("GET", "/steps")
    entry = [e for e in listing if e["name"] == "locals/test-put-rev"][0]
    assert entry["commitmsg"] == "test put"
    assert entry["progress"] == {"status": "NEW", "status-msg": "Update ready to be run", "progress": 0,
                                 "retries": 0}
    assert conn.call("GET", "/steps/locals/test-put-rev")[2] == state


def test_put_over_http_1_0_with_half_close(demo_server):
    body = b'{"#spec":"pantavisor-service-system@1"}'
    request = (b"PUT /steps/locals/pvcurl HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
    reply = raw_request(demo_server.socket, request, half_close=True)
    assert reply.startswith(b"HTTP/1.0 200")
    assert "locals/pvcurl" in names(demo_server)


@pytest.mark.parametrize("path", [
    "/steps/locals/..", "/steps/locals/%2e%2e", "/steps/locals/%2E%2E", "/steps/locals/.",
    "/steps/locals/" + "x" * 65, "/steps/locals/a%2fb", "/steps/locals/..%2f..%2fetc",
])
def test_traversal_attempts_on_local_names_are_rejected(demo_server, path):
    before = sorted(os.listdir(trail(demo_server.storage_dir)))
    status, _, body = demo_server.request("PUT", path, b'{"#spec":"pantavisor-service-system@1"}')
    assert status == 400
    assert json.loads(body)["Error"] in ("Request has bas step name", "unknown endpoint: " + path)
    assert demo_server.request("GET", path)[0] in (400, 404)
    assert demo_server.request("PUT", path + "/commitmsg", b"m")[0] in (400, 404)
    assert sorted(os.listdir(trail(demo_server.storage_dir))) == before
    assert not os.path.exists(os.path.join(demo_server.storage_dir, "etc"))


@pytest.mark.parametrize("path", [
    "/steps/..%2f..%2fetc", "/steps/..", "/steps/%2e%2e", "/steps/%2e%2e/progress", "/steps/locals",
    "/steps/..%2fboot/progress", "/steps/" + "1" * 300,
])
def test_traversal_attempts_on_revisions_are_rejected(demo_server, path):
    before = sorted(os.listdir(trail(demo_server.storage_dir)))
    status, _, body = demo_server.request("GET", path)
    assert status in (400, 404)
    if status == 404:
        assert json.loads(body) == NOT_FOUND
    status, _, _ = demo_server.request("PUT", path.replace("/progress", "") + "/commitmsg", b"msg")
    # NOTE: /steps/locals/commitmsg is the local revision "commitmsg" (a state PUT): 422 here.
    assert status in (400, 404, 422)
    assert sorted(os.listdir(trail(demo_server.storage_dir))) == before


def test_unknown_revision_is_404(demo_server):
    for path in ("/steps/42", "/steps/42/progress", "/steps/locals/none", "/steps/locals/none/progress"):
        status, _, body = demo_server.request("GET", path)
        assert (status, json.loads(body)) == (404, NOT_FOUND), path
    status, _, body = demo_server.request("PUT", "/steps/42/commitmsg", b"msg")
    assert (status, json.loads(body)) == (404, NOT_FOUND)
    assert "42" not in names(demo_server)


HOUR_AGO = time.time() - 3600


def age(path, when=None):
    """Backdate ``path`` (and everything under it) to ``when``."""
    when = HOUR_AGO if when is None else when
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.utime(os.path.join(root, name), (when, when))
    os.utime(path, (when, when))


def old_revision(server, rev, data):
    """A revision written an hour ago, referencing an object of its own."""
    sha = hashlib.sha256(data).hexdigest()
    assert server.request("PUT", f"/objects/{sha}", data)[0] == 200
    age(make_rev(server.storage_dir, rev, minimal_state(**{"x/blob": sha})))
    age(os.path.join(server.storage_dir, "objects", sha))
    return sha


def objects(server):
    status, data = server.client().json("GET", "/objects")
    return {entry["sha256"] for entry in data}


def test_gc_reclaims_every_revision_but_running_committed_factory_and_recent(start_gunicorn):
    server = start_gunicorn(demo=True)
    storage = server.storage_dir
    shas = {rev: old_revision(server, rev, rev.encode() * 100) for rev in ("5", "locals/old")}
    make_rev(storage, "locals/fresh")
    assert {"5", "locals/old", "locals/fresh"} <= set(names(server))
    status, _, body = server.request("POST", "/storage/gc")
    assert (status, body) == (200, b'{"reclaimed": %d}' % (100 + 1000))
    remaining = set(names(server))
    assert "5" not in remaining and "locals/old" not in remaining
    assert {"0", "locals/fresh"} <= remaining  # factory/running/committed, and one written minutes ago
    assert not set(shas.values()) & objects(server)
    assert server.request("GET", "/steps/current")[0] == 200
    # once out of its grace window the fresh one goes too
    age(os.path.join(storage, "trails", "locals", "fresh"))
    assert server.request("POST", "/storage/gc")[0] == 200
    assert "locals/fresh" not in names(server)


def test_gc_keeps_local_revisions_when_told_to(start_gunicorn):
    server = start_gunicorn(demo=True, env={"PVCORE_STEPS_GC_KEEP_LOCALS": "1"})
    kept = old_revision(server, "locals/old", b"kept" * 100)
    gone = old_revision(server, "5", b"gone" * 100)
    assert server.request("POST", "/storage/gc")[2] == b'{"reclaimed": 400}'
    remaining = set(names(server))
    assert "locals/old" in remaining and "5" not in remaining
    assert kept in objects(server) and gone not in objects(server)
