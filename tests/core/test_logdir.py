"""pvcore/logdir.py: children's output within the log budget (docs/architecture.md, "Logs")."""
import os

from pvcore.logdir import LogDir, watermarks
from pvcore.testing import wait_until


def _size(root):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)


def test_watermarks_are_upstreams():
    assert watermarks(16 << 20, 4) == (int((16 << 20) * 0.9), 12 << 20)


def test_a_file_is_emptied_past_its_size_and_lines_are_never_cut_into(tmp_path):
    logs = LogDir(str(tmp_path), 0, 1000)
    logs.start()
    try:
        path = str(tmp_path / "r" / "c" / "console.log")
        first, second = logs.writer(path), logs.writer(path)
        os.write(first, b"one: a line in ")
        os.write(second, b"two: whole\n")
        os.write(first, b"two writes\n")
        wait_until(lambda: open(path, "rb").read().count(b"\n") == 2, 5)
        assert sorted(open(path, "rb").read().splitlines()) == [b"one: a line in two writes", b"two: whole"]
        for _ in range(50):
            os.write(first, b"x" * 99 + b"\n")
        os.close(first)
        os.close(second)
        wait_until(lambda: not logs._sinks, 5)
        assert 0 < os.path.getsize(path) <= 1000
    finally:
        logs.stop()


def test_at_start_the_logs_nobody_writes_go_oldest_first(tmp_path):
    for rev, age in (("old", 300), ("older", 600), ("recent", 10)):
        path = tmp_path / rev / "c" / "console.log"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x" * 310_000)
        os.utime(path, (os.path.getmtime(path) - age,) * 2)
    logs = LogDir(str(tmp_path), 1_000_000, 0)  # high 900 kB, low 750 kB
    logs.start()
    logs.stop()
    assert sorted(os.listdir(tmp_path)) == ["old", "recent"]
    assert _size(str(tmp_path)) < 1_000_000
