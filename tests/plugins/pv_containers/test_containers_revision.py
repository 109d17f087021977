"""``pv_containers_run_revision`` and ``pv_containers_stop`` (for the commands plugin)."""
import threading
import time

from engine_fakes import model_of, run_json, state_of
from pvcore.testing import wait_until

APP = dict(group="app", restart_policy="container")


def first_state():
    return state_of(run_json("sdk", group="platform"), run_json("a", **APP), run_json("b", **APP))


def test_run_revision_replaces_everything(make_device):
    dev = make_device(first_state(), clock=time.monotonic)
    dev.step(2)
    old = dict(dev.runtime.procs)
    new_state = state_of(run_json("sdk", group="platform"), run_json("a", **APP), run_json("c", **APP))
    ok = dev.core.hook.pv_containers_run_revision(core=dev.core, revision=model_of("1", new_state))
    assert ok == (True, "")
    assert dev.runtime.stopped == ["b", "a", "sdk"]  # reverse group order
    assert all(proc.code == -15 for proc in old.values())
    assert [e["name"] for e in dev.engine.container_list()] == ["sdk", "a", "c"]
    assert {e["status"] for e in dev.engine.container_list()} == {"STARTED"}
    assert dev.recorder.revision[-1] == ("1", "READY")
    pids = dev.core.hook.pv_containers_pids(core=dev.core)
    assert set(pids) == {"sdk", "a", "c"} and all(pid > 0 for pid in pids.values())


def test_only_changed_keeps_unchanged_containers(make_device):
    dev = make_device(first_state(), clock=time.monotonic)
    dev.step(2)
    kept_sdk, kept_a = dev.runtime.procs["sdk"], dev.runtime.procs["a"]
    new_state = state_of(run_json("sdk", group="platform"), run_json("a", **APP),
                         run_json("b", status_goal="STARTED", **APP), run_json("d", **APP))
    ok = dev.engine.run_revision(model_of("2", new_state), only_changed=True)
    assert ok == (True, "")
    assert dev.runtime.stopped == ["b"]
    assert dev.runtime.procs["sdk"] is kept_sdk and dev.runtime.procs["a"] is kept_a
    assert dev.runtime.started.count("b") == 2 and "d" in dev.runtime.started


def test_goal_not_reached_within_group_timeout(make_device):
    dev = make_device(first_state(), clock=time.monotonic)
    dev.step(2)
    groups = [{"name": "base", "status_goal": "READY", "timeout": 0.3}]
    started = time.monotonic()
    ok = dev.engine.run_revision(model_of("3", state_of(run_json("x"), groups=groups)))
    assert ok == (False, "Status goal not reached")
    assert 0.3 <= time.monotonic() - started < 3
    assert dev.status("x") == "STARTED"


def test_explicit_timeout(make_device):
    dev = make_device(None, clock=time.monotonic)
    ok = dev.engine.run_revision(model_of("3", state_of(run_json("x", status_goal="READY", **APP))), timeout=0.2)
    assert ok == (False, "Status goal not reached")


def test_ready_signal_completes_the_run(make_device):
    dev = make_device(None, clock=time.monotonic)
    result = []
    state = state_of(run_json("x", status_goal="READY", **APP))
    worker = threading.Thread(target=lambda: result.append(dev.engine.run_revision(model_of("4", state))))
    worker.start()
    wait_until(lambda: dev.engine.container("x") and dev.status("x") == "STARTED", 5)
    assert dev.core.hook.pv_containers_signal(core=dev.core, name="x", type="ready", payload="") is True
    worker.join(5)
    assert result == [(True, "")]


def test_failed_start_is_reported(make_device):
    dev = make_device(None, clock=time.monotonic)
    dev.runtime.fail.add("x")
    ok = dev.engine.run_revision(model_of("5", state_of(run_json("x", **APP))))
    assert ok == (False, "A container could not be started")


def test_crash_without_recovery_is_reported(make_device):
    dev = make_device(None, clock=time.monotonic)
    state = state_of(run_json("x", status_goal="READY", **APP, auto_recovery={"policy": "no"}))
    result = []
    worker = threading.Thread(target=lambda: result.append(dev.engine.run_revision(model_of("6", state))))
    worker.start()
    wait_until(lambda: "x" in dev.runtime.procs, 5)
    dev.runtime.procs["x"].exit(2)
    worker.join(5)
    assert result == [(False, "A container could not be started")]


def test_stop_containers_hook(make_device):
    dev = make_device(first_state())
    dev.step(2)
    assert dev.core.hook.pv_containers_stop(core=dev.core, timeout=1) is True
    assert dev.runtime.stopped == ["b", "a", "sdk"]
    assert dev.core.hook.pv_containers_pids(core=dev.core) == {"sdk": -1, "a": -1, "b": -1}
