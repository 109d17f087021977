"""``pv_containers_run_revision`` and ``pv_containers_stop`` (for the commands plugin)."""
import threading
import time

from engine_fakes import Clock, model_of, run_json, state_of
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


def test_goals_timeout_is_the_timeout_of_groups_without_one(make_device):
    dev = make_device(None, clock=time.monotonic)
    groups = [{"name": "base", "status_goal": "READY"}]
    started = time.monotonic()
    ok = dev.engine.run_revision(model_of("3", state_of(run_json("x"), groups=groups)), timeout=0.3)
    assert ok == (False, "Status goal not reached")
    assert 0.3 <= time.monotonic() - started < 3


def test_group_timeout_longer_than_goals_timeout_is_waited(make_device):
    """Issue 25: a container READY after the global goals timeout, within its group's own, is not cut."""
    dev = make_device(None, clock=time.monotonic)
    groups = [{"name": "base", "status_goal": "READY", "timeout": 5}]
    state = state_of(run_json("x"), groups=groups)
    result = []
    worker = threading.Thread(target=lambda: result.append(dev.engine.run_revision(model_of("3", state),
                                                                                     timeout=0.2)))
    worker.start()
    wait_until(lambda: dev.engine.container("x") and dev.status("x") == "STARTED", 5)
    time.sleep(0.6)  # three times the goals timeout
    assert result == []
    assert dev.core.hook.pv_containers_signal(core=dev.core, name="x", type="ready", payload="") is True
    worker.join(5)
    assert result == [(True, "")]


def test_status_goal_timer_is_armed_at_start_from_the_group_timeout(make_device):
    """Each container's timer runs from its own start: a later group's member is not cut by
    the time an earlier group took."""
    clock = Clock()
    groups = [{"name": "first", "status_goal": "READY", "timeout": 10},
              {"name": "second", "status_goal": "READY", "timeout": 10}]
    dev = make_device(state_of(run_json("a", group="first"), run_json("b", group="second"), groups=groups),
                      clock=clock)
    dev.step(2)
    assert (dev.status("a"), dev.status("b")) == ("STARTED", "BLOCKED")
    clock.advance(8)
    dev.core.hook.pv_containers_signal(core=dev.core, name="a", type="ready", payload="")
    dev.step(2)
    assert dev.status("b") == "STARTED"
    clock.advance(8)  # 16 s after boot, 8 s after b started
    dev.step()
    assert not dev.engine.container("b").group.timed_out
    clock.advance(3)
    dev.step()
    assert dev.engine.container("b").group.timed_out


def test_retries_used_up_fail_the_run_whatever_the_backoff_policy(make_device):
    dev = make_device(None, clock=time.monotonic)
    recovery = {"policy": "on-failure", "max_retries": 1, "retry_delay": 0, "backoff_policy": "60s"}
    state = state_of(run_json("x", status_goal="READY", **APP, auto_recovery=recovery))
    result = []
    worker = threading.Thread(target=lambda: result.append(dev.engine.run_revision(model_of("6", state))))
    worker.start()
    for _ in range(2):  # the first crash is retried, the second uses the retries up
        wait_until(lambda: "x" in dev.runtime.procs and dev.runtime.procs["x"].code is None, 5)
        proc = dev.runtime.procs["x"]
        proc.exit(1)
        wait_until(lambda: dev.runtime.procs["x"] is not proc or dev.status("x") == "RECOVERING", 5)
    worker.join(5)
    assert result == [(False, "A container could not be started")]
    assert dev.status("x") == "RECOVERING"  # the backoff policy still holds it
    exhausted = [e for e in dev.recorder.events if e.subject == "x" and e.data.get("recovery_exhausted")]
    assert exhausted


def test_stability_pending_until_stable_timeout(make_device):
    clock = Clock()
    recovery = {"policy": "on-failure", "max_retries": 3, "stable_timeout": 10}
    dev = make_device(state_of(run_json("x", **APP, auto_recovery=recovery), run_json("y", **APP,
                      auto_recovery={"policy": "no"})), clock=clock)
    dev.step(2)
    assert dev.core.hook.pv_containers_stability_pending(core=dev.core) == ["x"]
    clock.advance(9)
    dev.step()
    assert dev.core.hook.pv_containers_stability_pending(core=dev.core) == ["x"]
    dev.runtime.procs["x"].exit(1)  # a crash restarts the window
    dev.step(2)
    assert dev.status("x") == "STARTED" and dev.engine.container("x").retries == 1
    clock.advance(9)
    dev.step()
    assert dev.core.hook.pv_containers_stability_pending(core=dev.core) == ["x"]
    clock.advance(2)
    dev.step()
    assert dev.core.hook.pv_containers_stability_pending(core=dev.core) == []


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
