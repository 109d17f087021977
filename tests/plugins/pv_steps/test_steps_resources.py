"""/steps and its sub-resources, in-process."""
import json
import os
import re

import pytest

import pv_steps

from steps_helpers import SHA_A, make_rev, minimal_state, point_current, trail

NOT_FOUND = {"Error": "Resource does not exist"}
BAD_NAME = {"Error": "Request has bas step name"}
BAD_FORMAT = {"Error": "Parser: State JSON has bad format"}
RUN = {"#spec": "service-manifest-run@1", "name": "c", "group": "app", "status_goal": "READY",
       "restart_policy": "container"}


@pytest.fixture
def device(steps_core, make_client):
    """A core whose storage holds revision 0 (running) and a client for it."""
    core = steps_core()
    storage = core.settings.storage_dir
    make_rev(storage, "0", minimal_state(**{"c/root.squashfs": SHA_A}),
             progress='{"status":"DONE","status-msg":"Factory revision","progress":100,"retries":0}')
    point_current(storage, "0")
    return core, make_client(core), storage


def test_no_trails_dir_lists_empty_array(steps_core, make_client):
    result = make_client(steps_core()).simulate_get("/steps")
    assert result.status_code == 200
    assert result.content == b"[]"


def test_listing_format_is_exact(device):
    core, client, storage = device
    os.utime(trail(storage, "0"), (0, 86400 * 365))
    result = client.simulate_get("/steps")
    assert result.headers["content-type"] == "application/json"
    assert result.content == (
        b'[{"name":"0", "date":"1971-01-01T00:00:00Z", "commitmsg":"", '
        b'"progress":{"status":"DONE","status-msg":"Factory revision","progress":100,"retries":0}}]')


def test_listing_order_escaping_and_fallbacks(device):
    core, client, storage = device
    make_rev(storage, "10")
    make_rev(storage, "2", progress="not json")
    make_rev(storage, "locals/b", commitmsg=b'say "hi"\\\n\x01')
    make_rev(storage, 'locals/a"q')
    os.makedirs(trail(storage, ".1-ab.tmp"))  # staging leftovers are never listed
    listing = json.loads(client.simulate_get("/steps").content)
    assert [e["name"] for e in listing] == ["0", "10", "2", 'locals/a"q', "locals/b"]
    assert listing[2]["progress"] == {}
    assert listing[1]["progress"] == {}
    assert listing[4]["commitmsg"] == 'say "hi"\\\n\x01'
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z", e["date"]) for e in listing)


def test_get_state_by_name_and_current(device):
    core, client, storage = device
    for path in ("/steps/0", "/steps/current"):
        result = client.simulate_get(path)
        assert result.status_code == 200
        assert result.json == minimal_state(**{"c/root.squashfs": SHA_A})
        assert int(result.headers["content-length"]) == len(result.content)


@pytest.mark.parametrize("path", [
    "/steps/1", "/steps/..", "/steps/locals", "/steps/locals/nope", "/steps/locals/..", "/steps/current/x",
    "/steps/1/progress", "/steps/locals/nope/progress", "/steps/../progress", "/steps/" + "9" * 300,
])
def test_unknown_or_bad_revisions_are_not_found(device, path):
    core, client, storage = device
    result = client.simulate_get(path)
    assert result.status_code in (400, 404)
    if result.status_code == 404:
        assert result.json == NOT_FOUND


def test_progress(device):
    core, client, storage = device
    result = client.simulate_get("/steps/0/progress")
    assert result.status_code == 200
    assert result.json["status"] == "DONE"
    assert client.simulate_get("/steps/current/progress").json == result.json


def test_put_local_revision_then_read_it_back(device):
    core, client, storage = device
    body = json.dumps(minimal_state(**{"c/run.json": RUN}))
    result = client.simulate_put("/steps/locals/my-rev", body=body)
    assert result.status_code == 200
    assert result.content == b""
    assert client.simulate_get("/steps/locals/my-rev").content == body.encode()
    assert client.simulate_get("/steps/locals/my-rev/progress").json == {
        "status": "NEW", "status-msg": "Update ready to be run", "progress": 0, "retries": 0}
    assert [e["name"] for e in client.simulate_get("/steps").json] == ["0", "locals/my-rev"]
    assert not [n for n in os.listdir(trail(storage)) if n.endswith(".tmp")]


@pytest.mark.parametrize("name", ["..", ".", "x" * 65, "a.tmp", "a\x01b"])
def test_put_bad_local_names_are_400(device, name):
    core, client, storage = device
    result = client.simulate_put("/steps/locals/" + name, body=json.dumps(minimal_state()))
    assert result.status_code == 400
    assert result.json == BAD_NAME
    assert sorted(os.listdir(trail(storage))) == ["0", "current"]


def test_container_named_unlike_its_folder_is_422(device):
    # Regression (issue 19): the engine named such a container by run.json's
    # "name" and the transition by its folder, so when it died while TESTING
    # nothing was rolled back. One name per container: refused up front.
    core, client, storage = device
    state = minimal_state(**{"app/run.json": {"name": "not-app", "group": "root"}})
    result = client.simulate_put("/steps/locals/renamed", body=json.dumps(state))
    assert result.status_code == 422
    assert result.json == BAD_FORMAT
    assert not os.path.exists(trail(storage, "locals", "renamed"))


def test_64_char_local_name_is_accepted(device):
    core, client, storage = device
    assert client.simulate_put("/steps/locals/" + "x" * 64, body=json.dumps(minimal_state())).status_code == 200


@pytest.mark.parametrize("body", [b"", b"not json", b"\x1f\x8b\x08\x00tarball", b"[]", b'{"#spec":"x"}'])
def test_invalid_state_is_422_and_creates_nothing(device, body):
    core, client, storage = device
    result = client.simulate_put("/steps/locals/bad", body=body)
    assert result.status_code == 422
    assert result.json == BAD_FORMAT
    assert not os.path.exists(trail(storage, "locals", "bad"))
    assert not [n for n in os.listdir(trail(storage)) if n.endswith(".tmp")]


def test_failed_reupload_keeps_the_good_revision(device):
    core, client, storage = device
    good = json.dumps(minimal_state(**{"c/run.json": RUN}))
    client.simulate_put("/steps/locals/r", body=good)
    client.simulate_put("/steps/locals/r/commitmsg", body="kept")
    assert client.simulate_put("/steps/locals/r", body='{"#spec":"nope"}').status_code == 422
    assert client.simulate_get("/steps/locals/r").content == good.encode()
    assert client.simulate_get("/steps/locals/r/progress").json["status-msg"] == "Update ready to be run"


def test_reupload_replaces_state_and_forgets_done(device):
    core, client, storage = device
    client.simulate_put("/steps/locals/r", body=json.dumps(minimal_state()))
    open(trail(storage, "locals", "r", ".pv", "done"), "w").close()
    new = json.dumps(minimal_state(**{"x/file": SHA_A}))
    assert client.simulate_put("/steps/locals/r", body=new).status_code == 200
    assert client.simulate_get("/steps/locals/r").content == new.encode()
    assert not os.path.exists(trail(storage, "locals", "r", ".pv", "done"))


def test_put_over_the_running_revision_is_refused(device):
    core, client, storage = device
    make_rev(storage, "locals/live")
    point_current(storage, "locals/live")
    result = client.simulate_put("/steps/locals/live", body=json.dumps(minimal_state(**{"y": SHA_A})))
    assert result.status_code == 409
    assert result.json == {"Error": "Revision is running"}
    assert client.simulate_get("/steps/current").json == minimal_state()


def test_put_over_the_rollback_point_is_refused(device):
    core, client, storage = device
    make_rev(storage, "locals/committed")
    assert pv_steps.commit(core, rev="locals/committed")
    result = client.simulate_put("/steps/locals/committed", body=json.dumps(minimal_state()))
    assert result.status_code == 409
    assert result.json == {"Error": "Revision is the rollback point"}


def test_state_over_the_size_limit_is_507(steps_core, make_client):
    core = steps_core(steps_max_state_size=100)
    client = make_client(core)
    body = json.dumps(minimal_state(pad="x" * 200))
    result = client.simulate_put("/steps/locals/big", body=body)
    assert result.status_code == 507
    assert result.json == {"Error": "Not enough disk space available"}
    result = client.simulate_put("/steps/locals/big", body=body,
                                 extras={"CONTENT_LENGTH": "", "wsgi.input_terminated": True})
    assert result.status_code == 507
    assert not os.path.exists(trail(core.settings.storage_dir, "locals", "big"))
    assert not [n for n in os.listdir(trail(core.settings.storage_dir)) if n.endswith(".tmp")]


def test_state_larger_than_free_space_is_507(steps_core, make_client):
    core = steps_core(free_space=lambda path: 10)
    result = make_client(core).simulate_put("/steps/locals/x", body=json.dumps(minimal_state()))
    assert result.status_code == 507
    assert not os.path.exists(trail(core.settings.storage_dir, "locals", "x"))


def test_commit_messages(device):
    core, client, storage = device
    assert client.simulate_put("/steps/0/commitmsg", body="factory").status_code == 200
    assert client.simulate_get("/steps").json[0]["commitmsg"] == "factory"
    make_rev(storage, "locals/l")
    assert client.simulate_put("/steps/locals/l/commitmsg", body="x" * 256).status_code == 200
    with open(trail(storage, "locals", "l", ".pv", "commitmsg"), "rb") as fh:
        assert fh.read() == b"x" * 256
    assert client.simulate_put("/steps/current/commitmsg", body="via current").status_code == 200
    assert client.simulate_get("/steps").json[0]["commitmsg"] == "via current"


def test_a_commit_message_on_a_full_disk_is_507_and_keeps_the_old_one(device, monkeypatch):
    import errno

    from pv_steps import trails

    core, client, storage = device
    assert client.simulate_put("/steps/0/commitmsg", body="before").status_code == 200

    def full(path, data, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trails, "atomic_write", full)
    result = client.simulate_put("/steps/0/commitmsg", body="after")
    assert (result.status_code, result.json) == (507, {"Error": "Not enough disk space available"})
    assert client.simulate_get("/steps").json[0]["commitmsg"] == "before"


def test_commit_message_errors(device):
    core, client, storage = device
    result = client.simulate_put("/steps/0/commitmsg", body="x" * 257)
    assert (result.status_code, result.json) == (507, {"Error": "Not enough disk space available"})
    result = client.simulate_put("/steps/0/commitmsg", body="")
    assert (result.status_code, result.json) == (400, {"Error": "No commit message"})
    for path in ("/steps/7/commitmsg", "/steps/locals/none/commitmsg", "/steps/../commitmsg"):
        result = client.simulate_put(path, body="msg")
        assert (result.status_code, result.json) == (404, NOT_FOUND), path
    assert sorted(os.listdir(trail(storage))) == ["0", "current"]
    assert not os.path.exists(trail(storage, "locals"))


def test_listing_1000_revisions(device):
    # How fast is `make bench`'s business (figure 4, scale), never a timed test.
    core, client, storage = device
    progress = '{"status":"NEW","status-msg":"Update ready to be run","progress":0,"retries":0}'
    for i in range(1, 1000):
        make_rev(storage, str(i), progress=progress, commitmsg=b"m")
    listing = client.simulate_get("/steps").json
    assert len(listing) == 1000
