

def test_listing_is_reused_while_the_directory_is_unchanged_and_sees_every_change(tmp_path):
    import hashlib
    import os
    import time

    from pv_objects.store import ObjectStore

    store = ObjectStore(str(tmp_path), lambda path: 10 ** 12, 0)

    def add(data):
        sha = hashlib.sha256(data).hexdigest()
        (tmp_path / sha).write_bytes(data)
        return sha

    first = add(b"one")
    past = time.time() - 60
    os.utime(tmp_path, (past, past))  # a settled directory
    listing = store.listing()
    assert listing == [(first, 3)]
    assert store.listing() is listing  # reused, not rescanned
    second = add(b"second")  # changes the directory's mtime
    assert sorted(store.listing()) == sorted([(first, 3), (second, 6)])
    os.unlink(tmp_path / first)
    assert store.listing() == [(second, 6)]
