"""/objects, /objects/{sha}, /storage/gc and the objects hooks, in-process."""
import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from objects_helpers import blob, objects_dir

BAD_NAME = {"Error": "Request has bad object name"}


def put(client, sha, data, **kwargs):
    return client.simulate_put("/objects/" + sha, body=data, **kwargs)


def test_empty_store_lists_empty_array(objects_core, make_client):
    result = make_client(objects_core()).simulate_get("/objects")
    assert result.status_code == 200
    assert result.json == []
    assert result.headers["content-type"] == "application/json"


def test_upload_then_list_and_download(objects_core, make_client):
    client = make_client(objects_core())
    data, sha = blob("hello pvctrl test\n", 24)
    assert put(client, sha, data).status_code == 200
    assert client.simulate_get("/objects").json == [{"sha256": sha, "size": "24"}]
    got = client.simulate_get("/objects/" + sha)
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/octet-stream"
    assert "content-length" not in got.headers
    assert got.content == data


def test_listing_is_sorted_and_skips_temp_and_junk(objects_core, make_client):
    core = objects_core()
    directory = objects_dir(core)
    for name in ("b" * 64, "a" * 64, "c" * 64 + ".123-ab.tmp", "A" * 64, "notes.txt"):
        with open(os.path.join(directory, name), "wb") as fh:
            fh.write(b"xy")
    listing = make_client(core).simulate_get("/objects").json
    assert listing == [{"sha256": "a" * 64, "size": "2"}, {"sha256": "b" * 64, "size": "2"}]


@pytest.mark.parametrize("name", ["a" * 63, "a" * 65, "A" * 64, "g" * 64, "a" * 63 + "%20"])
def test_bad_names_are_400(objects_core, make_client, name):
    client = make_client(objects_core())
    assert client.simulate_get("/objects/" + name).json == BAD_NAME
    result = put(client, name, b"data")
    assert result.status_code == 400
    assert result.json == BAD_NAME


def test_missing_object_is_400_bad_name(objects_core, make_client):
    result = make_client(objects_core()).simulate_get("/objects/" + "a" * 64)
    assert result.status_code == 400
    assert result.json == BAD_NAME


def test_bad_checksum_is_422_and_leaves_nothing(objects_core, make_client):
    core = objects_core()
    result = put(make_client(core), "a" * 64, b"checksum test\n")
    assert result.status_code == 422
    assert result.json == {"Error": "Object has bad checksum"}
    assert os.listdir(objects_dir(core)) == []


def test_duplicate_upload_is_a_no_op_that_restarts_the_grace_period(objects_core, make_client):
    core = objects_core()
    client = make_client(core)
    data, sha = blob("duplicate test\n")
    assert put(client, sha, data).status_code == 200
    path = os.path.join(objects_dir(core), sha)
    os.utime(path, (1000, 1000))
    inode = os.stat(path).st_ino
    assert put(client, sha, data).status_code == 200
    assert os.stat(path).st_ino == inode  # not rewritten
    assert os.stat(path).st_mtime > time.time() - 60


def test_duplicate_upload_with_wrong_body_is_422_and_keeps_the_object(objects_core, make_client):
    core = objects_core()
    client = make_client(core)
    data, sha = blob("keep me")
    put(client, sha, data)
    assert put(client, sha, b"other bytes").status_code == 422
    with open(os.path.join(objects_dir(core), sha), "rb") as fh:
        assert fh.read() == data


def test_not_enough_space_by_content_length_is_507_before_writing(objects_core, make_client):
    core = objects_core(free_space=lambda path: 100)
    data, sha = blob("big", 101)
    result = put(make_client(core), sha, data)
    assert result.status_code == 507
    assert result.json == {"Error": "Not enough disk space available"}
    assert os.listdir(objects_dir(core)) == []


def test_exactly_the_free_space_fits(objects_core, make_client):
    core = objects_core(free_space=lambda path: 100)
    data, sha = blob("fits", 100)
    assert put(make_client(core), sha, data).status_code == 200


def test_reserve_percent_is_taken_off_free_space(objects_core, make_client):
    core = objects_core(free_space=lambda path: 10 ** 15, storage_reserved_percent=0)
    data, sha = blob("reserve", 10)
    assert put(make_client(core), sha, data).status_code == 200
    # With the whole partition reserved nothing fits, whatever is free.
    core = objects_core(storage_reserved_percent=100)
    assert put(make_client(core), sha, data).status_code == 507
    assert os.listdir(objects_dir(core)) == []


def test_chunked_body_over_free_space_is_507_and_leaves_nothing(objects_core, make_client):
    core = objects_core(free_space=lambda path: (1 << 20) + 10)
    data = os.urandom(3 << 20)
    sha = hashlib.sha256(data).hexdigest()

    # No Content-Length (as with a chunked request): the limit is enforced while writing.
    result = make_client(core).simulate_put("/objects/" + sha, body=data,
                                            extras={"CONTENT_LENGTH": "", "wsgi.input_terminated": True})
    assert result.status_code == 507
    assert os.listdir(objects_dir(core)) == []


def test_write_error_no_space_is_507_and_leaves_nothing(objects_core, make_client):
    """A file-size limit makes write() fail with EFBIG, as a full disk fails with ENOSPC."""
    core = objects_core()
    data = os.urandom(3 << 20)
    sha = hashlib.sha256(data).hexdigest()
    script = f"""
import resource, signal, sys
sys.path[:0] = {sys.path!r}
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
import io, shutil
from pv_objects.store import ObjectStore
from pvcore.errors import InsufficientStorage
store = ObjectStore({objects_dir(core)!r}, lambda p: shutil.disk_usage(p).free, 0)
try:
    store.put({sha!r}, io.BytesIO(sys.stdin.buffer.read()), None)
except InsufficientStorage:
    print("507")
"""
    out = subprocess.run([sys.executable, "-c", script], input=data, capture_output=True, timeout=30)
    assert out.stdout.strip().splitlines()[-1:] == [b"507"], out.stderr.decode()
    assert os.listdir(objects_dir(core)) == []


def test_object_path_hook(objects_core, make_client):
    core = objects_core()
    data, sha = blob("path")
    assert core.hook.pv_objects_object_path(core=core, sha=sha) is None
    put(make_client(core), sha, data)
    assert core.hook.pv_objects_object_path(core=core, sha=sha) == os.path.join(objects_dir(core), sha)
    assert core.hook.pv_objects_object_path(core=core, sha="../" + sha[3:]) is None


def _age(path, seconds=3600):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_gc_keeps_referenced_and_fresh_objects_and_removes_old_unreferenced(objects_core, make_client, refs):
    core = objects_core()
    client = make_client(core)
    (old, old_sha), (ref, ref_sha), (new, new_sha) = blob("old", 300), blob("ref", 500), blob("new", 700)
    for data, sha in ((old, old_sha), (ref, ref_sha), (new, new_sha)):
        put(client, sha, data)
    directory = objects_dir(core)
    _age(os.path.join(directory, old_sha))
    _age(os.path.join(directory, ref_sha))
    refs.shas = {ref_sha}
    result = client.simulate_post("/storage/gc")
    assert result.status_code == 200
    assert result.content == b'{"reclaimed": 300}'
    assert result.headers["content-type"] == "application/json"
    assert sorted(os.listdir(directory)) == sorted([ref_sha, new_sha])


def test_gc_grace_period_is_a_setting(objects_core, make_client, refs):
    core = objects_core(storage_gc_grace=0)
    client = make_client(core)
    data, sha = blob("fresh but unreferenced")
    put(client, sha, data)
    assert client.simulate_post("/storage/gc").content == b'{"reclaimed": %d}' % len(data)
    assert os.listdir(objects_dir(core)) == []


def test_stored_and_collected_objects_are_published(objects_core, make_client, refs):
    core = objects_core(storage_gc_grace=0)
    client = make_client(core)
    data, sha = blob("announced")
    put(client, sha, data)
    put(client, sha, data)  # already there: nothing new
    client.simulate_post("/storage/gc")
    replay = client.simulate_get("/_pvcore/events", params={"since": "0", "types": "object"}).text
    assert [(e["type"], e["subject"], e["data"]) for e in map(json.loads, replay.splitlines())] == [
        ("object.stored", sha, {"size": len(data)}), ("object.collected", sha, {})]


def test_gc_keeps_objects_still_linked_into_a_trail(objects_core, make_client):
    core = objects_core(storage_gc_grace=0)
    data, sha = blob("linked")
    put(make_client(core), sha, data)
    os.link(os.path.join(objects_dir(core), sha), os.path.join(core.settings.storage_dir, "linked"))
    assert make_client(core).simulate_post("/storage/gc").content == b'{"reclaimed": 0}'
    assert os.listdir(objects_dir(core)) == [sha]


def test_gc_removes_stale_temp_files_only(objects_core, make_client):
    core = objects_core()
    directory = objects_dir(core)
    stale = os.path.join(directory, "a" * 64 + ".1-00.tmp")
    fresh = os.path.join(directory, "b" * 64 + ".1-00.tmp")
    for path in (stale, fresh):
        with open(path, "wb") as fh:
            fh.write(b"12345")
    _age(stale)
    assert make_client(core).simulate_post("/storage/gc").content == b'{"reclaimed": 5}'
    assert os.listdir(directory) == [os.path.basename(fresh)]


def test_without_the_owner_of_revisions_nothing_collects(make_core, make_client):
    import pv_objects

    # The object store never guesses what is referenced: only the owner of
    # the revisions collects (with a keep-set), and it is not loaded here.
    core = make_core(plugins=[pv_objects], overrides={"storage_gc_grace": 0, "storage_reserved_percent": 0})
    data, sha = blob("orphan")
    put(make_client(core), sha, data)
    assert make_client(core).simulate_post("/storage/gc").status_code == 400
    assert os.listdir(objects_dir(core)) == [sha]


def test_startup_sweeps_temp_files_of_dead_processes_only(make_core, tmp_path):
    import pv_objects

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    storage = tmp_path / "storage"
    directory = storage / "objects"
    directory.mkdir(parents=True)
    dead_tmp = directory / f"{'a' * 64}.{dead.pid}-0f.tmp"
    live_tmp = directory / f"{'b' * 64}.{os.getppid()}-0f.tmp"
    for path in (dead_tmp, live_tmp):
        path.write_bytes(b"partial")
    make_core(plugins=[pv_objects], overrides={"storage_dir": str(storage)})
    assert sorted(p.name for p in directory.iterdir()) == [live_tmp.name]


def test_listing_10000_objects(objects_core, make_client):
    # How fast is `make bench`'s business (figure 4, scale), never a timed test.
    core = objects_core()
    directory = objects_dir(core)
    for i in range(10000):
        with open(os.path.join(directory, "%064x" % i), "wb"):
            pass
    client = make_client(core)
    listing = client.simulate_get("/objects").json
    assert len(listing) == 10000 and listing[0] == {"sha256": "0" * 64, "size": "0"}
    assert json.loads(client.simulate_post("/storage/gc").content) == {"reclaimed": 0}
