"""Process groups: nothing a worker started outlives it."""
import os
import signal
import subprocess
import sys

from pvcore.supervisor import ProcessGroups, group_members, start_time
from pvcore.supervisor import process_running as alive
from pvcore.testing import wait_until

TREE = [sys.executable, "-c", "import subprocess,time; subprocess.Popen(['sleep','300']); time.sleep(300)"]


def test_stop_kills_the_whole_group_and_forgets_it(tmp_path):
    groups = ProcessGroups(str(tmp_path / "pg"))
    proc = groups.spawn("test.tree", TREE)
    wait_until(lambda: len(group_members(proc.pid)) == 2)
    members = group_members(proc.pid)
    assert os.listdir(tmp_path / "pg") == ["test.tree.pgid"]
    groups.stop(proc, timeout=2)
    wait_until(lambda: not any(alive(p) for p in members))
    assert os.listdir(tmp_path / "pg") == []


def test_stop_escalates_to_sigkill(tmp_path):
    groups = ProcessGroups(str(tmp_path / "pg"))
    stubborn = [sys.executable, "-c", "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ok', flush=True); time.sleep(300)"]
    proc = groups.spawn("stubborn", stubborn, log_path=str(tmp_path / "out.log"))
    wait_until(lambda: (tmp_path / "out.log").exists() and b"ok" in (tmp_path / "out.log").read_bytes())
    assert groups.stop(proc, timeout=0.5) == -signal.SIGKILL


def test_leftovers_of_a_dead_worker_are_killed(tmp_path):
    record_dir = str(tmp_path / "pg")
    crashed = ProcessGroups(record_dir)
    proc = crashed.spawn("test.tree", TREE)
    wait_until(lambda: len(group_members(proc.pid)) == 2)
    members = group_members(proc.pid)
    # a new worker, with no memory of the old one's children
    assert ProcessGroups(record_dir).kill_leftovers() == 1
    proc.wait(5)
    wait_until(lambda: not any(alive(p) for p in members))
    assert os.listdir(record_dir) == []


def test_a_recycled_pid_is_never_killed(tmp_path):
    record_dir = tmp_path / "pg"
    record_dir.mkdir()
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        # a record naming the bystander's pid, written by a process that started earlier
        (record_dir / "old.pgid").write_text(f"{bystander.pid} {int(start_time(bystander.pid)) - 1}\n")
        assert ProcessGroups(str(record_dir)).kill_leftovers() == 0
        assert bystander.poll() is None
        assert os.listdir(record_dir) == []
    finally:
        bystander.kill()
        bystander.wait()


def test_an_unrecorded_child_is_found_by_its_tag(tmp_path):
    # a worker killed between fork and writing the record
    crashed = ProcessGroups(str(tmp_path / "pg"))
    proc = crashed.spawn("lost", TREE)
    wait_until(lambda: len(group_members(proc.pid)) == 2)
    members = group_members(proc.pid)
    for name in os.listdir(tmp_path / "pg"):
        os.unlink(tmp_path / "pg" / name)
    other = ProcessGroups(str(tmp_path / "elsewhere")).spawn("bystander", ["sleep", "300"])
    try:
        assert ProcessGroups(str(tmp_path / "pg")).kill_leftovers() >= 1
        proc.wait(5)
        wait_until(lambda: not any(alive(p) for p in members))
        assert other.poll() is None  # another supervisor's child is left alone
    finally:
        other.kill()
        other.wait()
