"""The built-in process runtime, and a third-party runtime chosen through the hook."""
import os
import time

import pv_containers
from engine_fakes import FakeRuntime, FakeStorage, run_json, state_of
from pvcore.supervisor import process_running as alive
from pv_containers.runtime import ProcessRuntime
from pvcore import hookimpl
from pvcore.testing import wait_until

CODE = ("import os, time; print(os.environ['PVCORE_CONTAINER'], os.environ['PVCORE_CTRL_SOCKET'], os.getcwd(),"
        " flush=True); time.sleep(60)")


class LaterRuntime:
    """A third-party runtime plugin: a plain hookimpl, registered after the built-in one."""

    def __init__(self):
        self.runtime = FakeRuntime()

    @hookimpl
    def pv_containers_runtime(self, core):
        return self.runtime


def test_third_party_runtime_is_used(make_core):
    plugin = LaterRuntime()
    core = make_core(plugins=[pv_containers, FakeStorage(state_of(run_json("sdk", group="platform"))), plugin])
    engine = core.stash[pv_containers.ENGINE]
    engine.step()
    assert engine.runtime is plugin.runtime
    assert plugin.runtime.started == ["sdk"]


def test_process_runtime_runs_supervised_processes(make_core):
    state = state_of(run_json("box", group="platform", exec=["{python}", "-c", CODE]))
    core = make_core(plugins=[pv_containers, FakeStorage(state)], overrides={"containers_interval": 0.05})
    engine = core.stash[pv_containers.ENGINE]
    assert isinstance(engine.runtime, ProcessRuntime)
    assert engine.pids() == {"box": -1}  # nothing runs before the service starts
    core.start()
    wait_until(lambda: engine.container("box") and engine.container("box").status.name == "STARTED", 10)
    pid = engine.pids()["box"]
    assert alive(pid) and os.getpgid(pid) == pid  # its own process group
    storage = os.path.abspath(core.settings.storage_dir)
    log_path = os.path.join(storage, "logs", "0", "box", "console.log")
    line = wait_until(lambda: os.path.exists(log_path) and open(log_path).read().strip(), 10)
    assert line.split() == ["box", os.path.abspath(core.settings.socket_path),
                            os.path.join(storage, "disks", "rev", "0", "box")]
    core.stop()
    assert not alive(pid)
    assert engine.container("box").status.name == "STOPPED"


def test_default_program_is_the_demo_container(make_core):
    state = state_of(run_json("plain", group="platform"))
    core = make_core(plugins=[pv_containers, FakeStorage(state)])
    engine = core.stash[pv_containers.ENGINE]
    core.start()
    wait_until(lambda: engine.pids() and engine.pids()["plain"] > 0, 10)
    with open(f"/proc/{engine.pids()['plain']}/cmdline", "rb") as fh:
        assert fh.read().split(b"\0")[1:3] == [b"-m", b"pvcore_demo.container"]
    started = time.monotonic()
    core.stop()
    assert time.monotonic() - started < 5


DAEMONIZE = r'''
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
with open(sys.argv[1] + ".tmp", "w") as fh:
    fh.write(str(child.pid))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)
'''


def test_stop_kills_processes_that_left_the_group(make_core, tmp_path):
    marker = str(tmp_path / "pid")
    state = state_of(run_json("box", group="platform", exec=["{python}", "-c", DAEMONIZE, marker]))
    core = make_core(plugins=[pv_containers, FakeStorage(state)])
    core.start()
    escaped = int(wait_until(lambda: os.path.exists(marker) and open(marker).read(), 10))
    assert alive(escaped) and os.getpgid(escaped) == escaped
    core.stop()
    wait_until(lambda: not alive(escaped), 5, message="escaped grandchild killed")


def test_a_collected_revisions_logs_and_disks_go_on_the_engines_thread(make_core):
    """pv_steps announces ``revision.collected``; the engine, their owner, deletes the
    revision's console logs and ``revision`` disks (docs/architecture.md §2)."""
    core = make_core(plugins=[pv_containers])
    storage = core.settings.storage_dir
    kept = [os.path.join(storage, "logs", "1", "c"), os.path.join(storage, "disks", "rev", "1", "c"),
            os.path.join(storage, "disks", "perm", "c")]
    doomed = [os.path.join(storage, "logs", "locals", "old", "c"),
              os.path.join(storage, "disks", "rev", "locals", "old", "c")]
    for path in kept + doomed:
        os.makedirs(path)
    core.start()
    core.publish("revision.collected", "locals/old", {})
    wait_until(lambda: not any(os.path.exists(path) for path in doomed), message="the revision's data to go")
    assert all(os.path.exists(path) for path in kept)
    assert os.path.isdir(os.path.join(storage, "logs", "locals"))  # other revisions' parent stays
