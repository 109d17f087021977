import os

from pvcore.fsutil import atomic_write, sweep_temp_files


def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / "key"
    atomic_write(str(path), "one")
    atomic_write(str(path), b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["key"]


def test_failed_write_leaves_old_content_and_no_temp(tmp_path):
    path = tmp_path / "key"
    atomic_write(str(path), "old")

    class Unwritable(bytes):
        pass

    try:
        atomic_write(str(path), 12345)  # not bytes: fails inside the write
    except TypeError:
        pass
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["key"]


def test_sweep_removes_only_temp_leftovers(tmp_path):
    (tmp_path / ".abc.tmp").write_text("x")
    (tmp_path / "keep").write_text("x")
    assert sweep_temp_files(str(tmp_path)) == 1
    assert os.listdir(tmp_path) == ["keep"]
