"""MetaStore: ordering, persistence, the run-dir views, key rules, listings."""
import json
import os

import pytest

from pv_metadata.store import MetaStore, is_json_container, render_listing, valid_key


@pytest.fixture
def dirs(tmp_path):
    return str(tmp_path / "storage" / "cache" / "meta"), str(tmp_path / "run" / "user-meta")


def make_store(dirs):
    store = MetaStore(*dirs)
    store.load()
    return store


def test_listing_is_newest_added_first_and_updates_keep_position(dirs):
    store = make_store(dirs)
    for key in ("a", "b", "c"):
        store.put(key, key.upper())
    store.put("a", "A2")
    assert [key for key, _ in store.listing()] == ["c", "b", "a"]
    assert store.get("a") == "A2"


def test_readding_a_deleted_key_makes_it_newest(dirs):
    store = make_store(dirs)
    for key in ("a", "b"):
        store.put(key, "v")
    store.delete("a")
    store.put("a", "v")
    assert [key for key, _ in store.listing()] == ["a", "b"]


def test_values_and_order_survive_a_reload(dirs):
    store = make_store(dirs)
    for key in ("x", "y", "z"):
        store.put(key, "value-" + key)
    store.put("x", "changed")
    store.delete("y")
    again = make_store(dirs)
    assert again.snapshot() == {"x": "changed", "z": "value-z"}
    assert [key for key, _ in again.listing()] == ["z", "x"]


def test_one_file_per_key_with_the_raw_value(dirs):
    store = make_store(dirs)
    store.put("k", 'a "quoted"\nvalue')
    with open(os.path.join(dirs[0], "k"), "rb") as fh:
        assert fh.read() == b'a "quoted"\nvalue'
    store.delete("k")
    assert not os.path.exists(os.path.join(dirs[0], "k"))


def test_put_of_the_same_value_is_no_change(dirs):
    store = make_store(dirs)
    assert store.put("k", "v") is True
    assert store.put("k", "v") is False
    assert store.delete("k") is True
    assert store.delete("k") is False


def test_a_value_file_missing_from_the_index_is_adopted_as_newest(dirs):
    store = make_store(dirs)
    store.put("old", "1")
    # A crash between writing the value and the index leaves this state.
    with open(os.path.join(dirs[0], "stray"), "w") as fh:
        fh.write("2")
    again = make_store(dirs)
    assert [key for key, _ in again.listing()] == ["stray", "old"]
    with open(store.order_path) as fh:
        assert json.load(fh) == ["old", "stray"]


def test_index_entries_without_a_file_and_temp_leftovers_are_dropped(dirs):
    store = make_store(dirs)
    store.put("kept", "1")
    with open(store.order_path, "w") as fh:
        json.dump(["gone", "kept"], fh)
    os.makedirs(store.staging_dir, exist_ok=True)
    with open(os.path.join(store.staging_dir, "abc123.tmp"), "w") as fh:
        fh.write("torn")
    again = make_store(dirs)
    assert again.snapshot() == {"kept": "1"}
    assert not os.path.exists(os.path.join(store.staging_dir, "abc123.tmp"))


def test_keys_shaped_like_temp_files_survive_a_reload(dirs):
    store = make_store(dirs)
    for key in (".abc123.tmp", "x.tmp"):
        store.put(key, "v")
    assert make_store(dirs).snapshot() == {".abc123.tmp": "v", "x.tmp": "v"}


def test_loaded_values_are_truncated_to_4096_bytes(dirs):
    os.makedirs(dirs[0])
    with open(os.path.join(dirs[0], "big"), "w") as fh:
        fh.write("x" * 5000)
    assert make_store(dirs).get("big") == "x" * 4096


def test_views_follow_changes_including_dotted_keys(dirs):
    store = make_store(dirs)
    view = dirs[1]
    store.put("plain", "1")
    store.put("app.opts", "2")
    with open(os.path.join(view, "plain")) as fh:
        assert fh.read() == "1"
    with open(os.path.join(view + ".app", "opts")) as fh:
        assert fh.read() == "2"
    store.delete("app.opts")
    assert not os.path.exists(os.path.join(view, "app.opts"))
    # emptied, never removed: a running container may have it bound at /pantavisor/user-meta
    assert os.listdir(view + ".app") == []


def test_a_view_handed_out_before_its_first_key_shows_later_keys(dirs):
    store = make_store(dirs)
    store.load()
    mine = store.view_for("app")  # bound into container "app" before any key of it exists
    every = store.view_for(None)
    fd = os.open(mine, os.O_RDONLY | os.O_DIRECTORY)  # what a bind mount holds: the directory itself
    try:
        store.put("app.opts", "2")
        store.put("other.x", "3")
        store.delete("app.opts")
        store.put("app.more", "4")
        assert sorted(os.listdir(f"/proc/self/fd/{fd}")) == ["more"]
    finally:
        os.close(fd)
    assert sorted(os.listdir(every)) == ["app.more", "other.x"]


def test_views_are_rebuilt_at_load(dirs):
    store = make_store(dirs)
    store.put("a.b", "v")
    stale = os.path.join(dirs[1], "stale")
    with open(stale, "w") as fh:
        fh.write("x")
    make_store(dirs)
    assert not os.path.exists(stale)
    with open(os.path.join(dirs[1] + ".a", "b")) as fh:
        assert fh.read() == "v"


@pytest.mark.parametrize("key", ["ok", "a.b", "with space", "ünïcode", ".hidden", "x" * 255])
def test_valid_keys(key):
    assert valid_key(key)


@pytest.mark.parametrize("key", ["", ".", "..", "a/b", "nul\x00", "nl\n", "tab\t", "del\x7f", "x" * 256,
                                 "é" * 128])
def test_invalid_keys(key):
    assert not valid_key(key)


@pytest.mark.parametrize("value,raw", [('{"a":1}', True), ("[1, 2]", True), (" {} ", True), ("1", False),
                                       ('"s"', False), ("{bad", False), ("[NaN]", False), ("", False)])
def test_json_containers(value, raw):
    assert is_json_container(value) is raw


def test_listing_escapes_keys_and_values_and_keeps_empty_values(dirs):
    store = make_store(dirs)
    tricky_key = 'k"ey\\with\nnewline'
    store.put(tricky_key, 'v"al\\ue\n\x01')
    store.put("empty", "")
    store.put("obj", '{"nested": [1, {"x": null}]}')
    store.put("number", "42")
    doc = json.loads(render_listing(store.listing()))
    assert doc == {"number": "42", "obj": {"nested": [1, {"x": None}]}, "empty": "",
                   tricky_key: 'v"al\\ue\n\x01'}
    assert list(doc) == ["number", "obj", "empty", tricky_key]


def test_empty_listing_is_an_empty_object(dirs):
    assert render_listing(make_store(dirs).listing()) == b"{}"


def test_an_index_kept_in_cache_by_an_earlier_release_is_moved_and_kept(tmp_path):
    """Upgrade: the order index and staging of releases before declared ownership
    lived in ``cache/``; they move to pv_metadata's own folder, order intact."""
    cache, own = tmp_path / "cache", tmp_path / "pvcore" / "pv_metadata"
    (cache / "meta").mkdir(parents=True)
    own.mkdir(parents=True)
    for key in ("b", "a", "c"):
        (cache / "meta" / key).write_text(key.upper())
    (cache / "meta.order").write_text('["b","a","c"]')
    (cache / ".meta.staging").mkdir()
    (cache / ".meta.staging" / "x.tmp").write_text("half")
    store = MetaStore(str(cache / "meta"), str(tmp_path / "run" / "user-meta"), own_dir=str(own))
    store.load()
    assert list(store.snapshot()) == ["b", "a", "c"]
    assert sorted(os.listdir(cache)) == ["meta"]
    assert (own / "meta.order").read_text() == '["b","a","c"]'


class FullDisk:
    """``atomic_write`` in pv_metadata.store failing with ENOSPC while ``full`` (a full storage
    partition); the run-dir views (``durable=False``) are on another filesystem and still work."""

    def __init__(self, monkeypatch):
        import errno

        from pv_metadata import store

        self.full = False
        real = store.atomic_write

        def atomic_write(path, data, *args, durable=True, **kwargs):
            if self.full and durable:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, data, *args, durable=durable, **kwargs)

        monkeypatch.setattr(store, "atomic_write", atomic_write)


def _file(dirs, key):
    path = os.path.join(dirs[0], key)
    return open(path).read() if os.path.exists(path) else None


def test_a_refused_put_changes_nothing_in_memory_nor_on_disk(dirs, monkeypatch):
    """A client's write on a full disk fails whole (the caller answers 507)."""
    disk = FullDisk(monkeypatch)
    store = make_store(dirs)
    store.put("k", "old")
    disk.full = True
    with pytest.raises(OSError):
        store.put("k", "new")
    with pytest.raises(OSError):
        store.put("fresh", "v")
    assert (store.get("k"), store.get("fresh")) == ("old", None)
    assert (_file(dirs, "k"), _file(dirs, "fresh")) == ("old", None)
    assert store.unsaved == 0


def test_a_deferred_put_is_current_in_memory_and_persisted_once_space_is_back(dirs, monkeypatch):
    """Issue 27: a device fact written on a full disk is what readers see at once, and
    its file catches up on the next flush (the refresh loop) or the next write of any key."""
    disk = FullDisk(monkeypatch)
    store = make_store(dirs)
    store.put("pantavisor.status", "STARTING")
    disk.full = True
    assert store.put("pantavisor.status", "READY", defer=True)
    assert store.put("new.key", "v", defer=True)
    assert store.get("pantavisor.status") == "READY"
    assert [key for key, _ in store.listing()] == ["new.key", "pantavisor.status"]
    assert open(os.path.join(dirs[1], "pantavisor.status")).read() == "READY"  # the view too
    assert _file(dirs, "pantavisor.status") == "STARTING" and _file(dirs, "new.key") is None
    assert store.unsaved == 3  # two values and the order index
    assert not store.flush()  # still full: nothing lost, nothing raised
    disk.full = False
    assert store.flush() and store.unsaved == 0
    assert (_file(dirs, "pantavisor.status"), _file(dirs, "new.key")) == ("READY", "v")
    again = make_store(dirs)
    assert list(again.snapshot().items()) == [("pantavisor.status", "READY"), ("new.key", "v")]


def test_a_held_value_is_written_by_the_next_write_of_any_key(dirs, monkeypatch):
    disk = FullDisk(monkeypatch)
    store = make_store(dirs)
    disk.full = True
    store.put("a", "1", defer=True)
    disk.full = False
    store.put("b", "2")
    assert (_file(dirs, "a"), _file(dirs, "b"), store.unsaved) == ("1", "2", 0)


def test_an_index_the_disk_refuses_does_not_fail_a_durable_value(dirs, monkeypatch):
    """The value file of a new key was written; only the order index was refused: the put
    succeeds (the value survives a restart as the newest key) and the index catches up."""
    store = make_store(dirs)
    store.put("a", "1")
    real = store._write_order
    refused = []

    def write_order(keys):
        refused.append(keys)
        raise OSError(28, "No space left on device")

    store._write_order = write_order
    assert store.put("b", "2")
    assert refused and store.unsaved == 1
    reloaded = MetaStore(*dirs)
    reloaded.load()
    assert list(reloaded.snapshot().items()) == [("a", "1"), ("b", "2")]
    store._write_order = real
    assert store.flush() and store.unsaved == 0
