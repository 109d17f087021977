"""The /user-meta and /device-meta endpoints and the metadata hooks, in process."""
import json
import os

import pytest

import pv_metadata
from pvcore import hookimpl

KINDS = [("user-meta", "user"), ("device-meta", "device")]
BAD_PUT = {"user": "Cannot add or update user meta", "device": "Cannot add or update device meta"}
MISSING = {"user": "User meta does not exist", "device": "Device meta does not exist"}


class Recorder:
    """Records metadata events and activities."""

    def __init__(self):
        self.changes = []
        self.activities = []

    @hookimpl
    def pvcore_event(self, core, event):
        if event.type.startswith("meta."):
            self.changes.append((event.type[len("meta."):], event.subject, event.data["value"]))

    @hookimpl
    def pvcore_activity(self, core, name, active):
        self.activities.append((name, active))


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def core(make_core, recorder):
    return make_core(plugins=[pv_metadata, recorder])


@pytest.fixture
def client(core, make_client):
    return make_client(core)


def error(resp):
    return resp.json["Error"]


@pytest.mark.parametrize("path,kind", KINDS)
def test_crud_round_trip(client, path, kind):
    assert client.simulate_get("/" + path).json == {}
    resp = client.simulate_put(f"/{path}/test-key", body="test-value-123")
    assert (resp.status_code, resp.text, resp.headers["content-type"]) == (200, "", "application/json")
    assert client.simulate_get("/" + path).json == {"test-key": "test-value-123"}
    assert client.simulate_put(f"/{path}/test-key", body="updated-value-456").status_code == 200
    assert client.simulate_get("/" + path).json["test-key"] == "updated-value-456"
    assert client.simulate_delete(f"/{path}/test-key").status_code == 200
    assert "test-key" not in client.simulate_get("/" + path).json


@pytest.mark.parametrize("path,kind", KINDS)
def test_delete_missing_key_is_404(client, path, kind):
    resp = client.simulate_delete(f"/{path}/nonexistent-key-xyz")
    assert resp.status_code == 404
    assert resp.text == '{"Error":"%s"}' % MISSING[kind]


@pytest.mark.parametrize("path,kind", KINDS)
def test_value_limit_is_4096_bytes(client, path, kind):
    assert client.simulate_put(f"/{path}/k", body="x" * 4096).status_code == 200
    resp = client.simulate_put(f"/{path}/k", body="y" * 4097)
    assert resp.status_code == 507
    assert error(resp) == "Not enough disk space available"
    assert client.simulate_get("/" + path).json["k"] == "x" * 4096


@pytest.mark.parametrize("path,kind", KINDS)
def test_empty_body_is_rejected(client, path, kind):
    resp = client.simulate_put(f"/{path}/k", body="")
    assert (resp.status_code, error(resp)) == (400, BAD_PUT[kind])
    assert client.simulate_get("/" + path).json == {}


@pytest.mark.parametrize("path,kind", KINDS)
@pytest.mark.parametrize("key", ["..", ".", "bad%0Akey", "nul%00", "x" * 256])
def test_invalid_keys_are_rejected(client, path, kind, key):
    resp = client.simulate_put(f"/{path}/{key}", body="v")
    assert (resp.status_code, error(resp)) == (400, BAD_PUT[kind])
    assert client.simulate_get("/" + path).json == {}


def test_non_utf8_value_is_rejected(client):
    resp = client.simulate_put("/user-meta/k", body=b"\xff\xfe")
    assert (resp.status_code, error(resp)) == (400, BAD_PUT["user"])


def test_a_query_string_on_a_key_is_refused_not_cut(client):
    # Cut off, the key would be another one (docs/protocol.md §2).
    assert client.simulate_put("/user-meta/key", body="v").status_code == 200
    resp = client.simulate_put("/user-meta/key", query_string="x=1", body="w")
    assert resp.status_code == 400
    assert client.simulate_get("/user-meta").json == {"key": "v"}


def test_listing_escapes_and_embeds_json(client):
    key = 'we"ird\\key'
    assert client.simulate_put("/user-meta/" + key.replace("\\", "%5C").replace('"', "%22"),
                               body='line1\n"quoted"\\end').status_code == 200
    client.simulate_put("/user-meta/obj", body='{"a": [1, 2], "b": {"c": "d"}}')
    client.simulate_put("/user-meta/arr", body="[true, null]")
    client.simulate_put("/user-meta/num", body="7")
    resp = client.simulate_get("/user-meta")
    assert json.loads(resp.text) == {
        "num": "7", "arr": [True, None], "obj": {"a": [1, 2], "b": {"c": "d"}}, key: 'line1\n"quoted"\\end',
    }


def test_hooks_fire_on_real_changes_only(client, recorder):
    client.simulate_put("/user-meta/k", body="1")
    client.simulate_put("/user-meta/k", body="1")
    client.simulate_put("/device-meta/d", body="2")
    client.simulate_delete("/user-meta/k")
    client.simulate_delete("/user-meta/k")
    assert recorder.changes == [("user", "k", "1"), ("device", "d", "2"), ("user", "k", None)]
    assert recorder.activities == [("usrmeta", True), ("usrmeta", False), ("devmeta", True), ("devmeta", False),
                                   ("usrmeta", True), ("usrmeta", False)]


def test_user_meta_hook_returns_a_copy(core, client):
    client.simulate_put("/user-meta/a", body="1")
    meta = core.hook.pv_metadata_user(core=core)
    assert meta == {"a": "1"}
    meta["b"] = "2"
    assert core.hook.pv_metadata_user(core=core) == {"a": "1"}


def test_files_and_views_on_disk(core, client):
    storage, run = core.settings.storage_dir, core.settings.run_dir
    client.simulate_put("/user-meta/pvr-sdk.authorized_keys", body="ssh-ed25519 AAAA")
    client.simulate_put("/device-meta/dk", body="dv")
    for path, content in [
        (os.path.join(storage, "cache", "meta", "pvr-sdk.authorized_keys"), "ssh-ed25519 AAAA"),
        (os.path.join(run, "user-meta", "pvr-sdk.authorized_keys"), "ssh-ed25519 AAAA"),
        (os.path.join(run, "user-meta.pvr-sdk", "authorized_keys"), "ssh-ed25519 AAAA"),
        (os.path.join(storage, "cache", "devmeta", "dk"), "dv"),
        (os.path.join(run, "device-meta", "dk"), "dv"),
    ]:
        with open(path) as fh:
            assert fh.read() == content, path
    client.simulate_delete("/user-meta/pvr-sdk.authorized_keys")
    assert not os.path.exists(os.path.join(run, "user-meta.pvr-sdk", "authorized_keys"))
    assert not os.path.exists(os.path.join(storage, "cache", "meta", "pvr-sdk.authorized_keys"))


def test_values_survive_a_new_core_on_the_same_dirs(core, client, make_core, make_client):
    client.simulate_put("/user-meta/first", body="1")
    client.simulate_put("/user-meta/second", body='{"x":1}')
    client.simulate_put("/device-meta/d", body="2")
    again = make_client(make_core(plugins=[pv_metadata], overrides={
        "storage_dir": core.settings.storage_dir, "run_dir": core.settings.run_dir}))
    resp = again.simulate_get("/user-meta")
    assert resp.text == '{"second":{"x":1},"first":"1"}'
    assert again.simulate_get("/device-meta").json == {"d": "2"}


def test_unprivileged_caller_is_refused(core, make_client):
    class Roles:
        @hookimpl
        def pvcore_identify_caller(self, core, pid):
            return "app"

        @hookimpl
        def pvcore_caller_roles(self, core, name):
            return []

    core.pm.register(Roles())
    client = make_client(core, pid=1)
    resp = client.simulate_put("/user-meta/k", body="v")
    assert resp.status_code == 403
    assert client.simulate_get("/user-meta").status_code == 403


def test_a_failed_write_is_reported_and_not_listed(core, client):
    persist = os.path.join(core.settings.storage_dir, "cache", "meta")
    os.rmdir(persist)
    with open(persist, "w") as fh:  # the store's directory is now a file: every write fails
        fh.write("")
    resp = client.simulate_put("/user-meta/k", body="v")
    assert (resp.status_code, error(resp)) == (500, BAD_PUT["user"])
    assert client.simulate_get("/user-meta").json == {}
