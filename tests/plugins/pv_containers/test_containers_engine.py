"""The status machine with a fake runtime and a hand-moved clock: gating, goals,
aggregation, recovery timing, user actions."""
import json

import pytest

from engine_fakes import run_json, state_of

from pvcore.errors import BadRequest

APP = dict(group="app", restart_policy="container")


def demo_like():
    return state_of(
        run_json("sdk", group="platform"),
        run_json("server", status_goal="READY", **APP),
        run_json("client", roles=[], **APP),
    )


def test_nothing_runs_before_the_first_step(make_device):
    dev = make_device(demo_like())
    # handed over while the app was built: known, but nothing started
    assert {e["status"] for e in dev.engine.container_list()} == {"INSTALLED"}
    assert dev.runtime.started == [] and dev.recorder.changes == []
    dev.step()
    assert dev.engine.loaded and dev.runtime.started


def test_groups_start_in_order_and_wait_for_goals(make_device):
    dev = make_device(demo_like())
    dev.step()
    # platform starts first; app waits behind it
    assert dev.runtime.started == ["sdk"]
    assert dev.status("server") == "BLOCKED"
    dev.step()
    assert dev.runtime.started == ["sdk", "server", "client"]
    assert dev.status("server") == "STARTED" and dev.status("client") == "STARTED"
    assert dev.recorder.starting == ["sdk", "server", "client"]


def test_group_waits_for_ready_until_its_timeout(make_device):
    groups = [
        {"name": "first", "status_goal": "READY", "timeout": 10},
        {"name": "second"},
    ]
    dev = make_device(state_of(run_json("a", group="first"), run_json("b", group="second"), groups=groups))
    dev.step(3)
    assert dev.status("a") == "STARTED" and dev.status("b") == "BLOCKED"
    dev.clock.advance(10.5)
    dev.step(2)
    assert dev.status("b") == "STARTED"  # timed out: the next group goes on


def test_ready_signal_unblocks_next_group(make_device):
    groups = [{"name": "first", "status_goal": "READY"}, {"name": "second"}]
    dev = make_device(state_of(run_json("a", group="first"), run_json("b", group="second"), groups=groups))
    dev.step(2)
    assert dev.engine.signal("a", "ready") is True
    assert dev.status("a") == "READY"
    dev.step()
    assert dev.status("b") == "STARTED"


def test_a_ready_signal_sent_while_the_runtime_still_starts_it_is_kept(make_device):
    dev = make_device(state_of(run_json("fast", status_goal="READY", **APP)))
    start = dev.runtime.start

    def start_and_signal(container):  # the container's init signals before start() returned
        handle = start(container)
        assert dev.engine.signal(container.name, "ready") is True
        return handle

    dev.runtime.start = start_and_signal
    dev.step(3)
    assert dev.status("fast") == "READY"


def test_signal_only_for_ready_goal_and_type_ready(make_device):
    dev = make_device(demo_like())
    dev.step(2)
    assert dev.engine.signal("sdk", "ready") is False
    assert dev.engine.signal("server", "alive") is False
    assert dev.engine.signal("nobody", "ready") is False
    assert dev.engine.signal("server", "ready") is True
    assert dev.engine.signal("server", "ready") is True  # repeating is harmless
    assert dev.status("server") == "READY"


def test_mounted_goal_is_not_a_process(make_device):
    dev = make_device(state_of(run_json("data1", group="data"), run_json("sdk", group="platform")))
    dev.step(2)
    assert dev.status("data1") == "MOUNTED"
    assert "data1" not in dev.runtime.started
    assert dev.engine.pids()["data1"] == -1


def test_group_and_revision_status_aggregate(make_device):
    dev = make_device(demo_like())
    dev.step(2)
    groups = {g["name"]: g["status"] for g in dev.engine.group_list()}
    assert groups == {"data": "READY", "root": "READY", "platform": "READY", "app": "STARTED"}
    assert dev.recorder.revision[-1] == ("0", "STARTED")
    dev.engine.signal("server", "ready")
    assert dev.recorder.revision[-1] == ("0", "READY")


def test_status_hooks_follow_every_change(make_device):
    dev = make_device(state_of(run_json("sdk", group="platform")))
    dev.step()
    assert dev.recorder.changes == [
        ("sdk", "NONE", "INSTALLED"), ("sdk", "INSTALLED", "STARTING"), ("sdk", "STARTING", "STARTED")]


def test_starting_hook_failure_is_a_failed_start(make_device):
    dev = make_device(state_of(run_json("sdk", group="platform")))
    dev.recorder.refuse.add("sdk")
    dev.step()
    assert dev.status("sdk") == "STOPPED"
    assert dev.runtime.started == []


def test_crash_without_recovery_stops(make_device):
    dev = make_device(state_of(run_json("sdk", group="platform")))
    dev.step()
    dev.runtime.procs["sdk"].exit(3)
    dev.step()
    assert dev.status("sdk") == "STOPPED"
    assert dev.engine.pids() == {"sdk": -1}


def test_recovery_backoff_timing_and_exhaustion(make_device, log_output):
    rec = {"policy": "on-failure", "max_retries": 3, "retry_delay": 2, "backoff_factor": 3,
           "backoff_policy": "never"}
    dev = make_device(state_of(run_json("app1", auto_recovery=rec, **APP)))
    dev.step()
    for attempt, delay in ((1, 2), (2, 6), (3, 18)):
        dev.runtime.procs["app1"].exit(1)
        dev.step()
        assert dev.status("app1") == "RECOVERING"
        assert dev.entry("app1")["auto_recovery"]["current_retries"] == attempt
        dev.clock.advance(delay - 0.1)
        dev.step()
        assert dev.status("app1") == "RECOVERING"
        dev.clock.advance(0.2)
        dev.step()
        assert dev.status("app1") == "STARTED"
    assert dev.runtime.started.count("app1") == 4
    dev.runtime.procs["app1"].exit(1)
    dev.step()
    assert dev.status("app1") == "STOPPED"
    assert dev.engine.container("app1").recovery_failed
    assert any(e["event"] == "container_recovery_exhausted" for e in log_output)


def test_reboot_backoff_does_not_reboot(make_device, log_output):
    rec = {"policy": "always", "max_retries": 1}
    dev = make_device(state_of(run_json("app1", auto_recovery=rec, **APP)))
    dev.step()
    dev.runtime.procs["app1"].exit(1)
    dev.step(2)  # retry_delay 0: immediate
    assert dev.runtime.started.count("app1") == 2
    dev.runtime.procs["app1"].exit(1)
    dev.step()
    assert dev.status("app1") == "STOPPED"
    exhausted = [e for e in log_output if e["event"] == "container_recovery_exhausted"]
    assert exhausted and exhausted[0]["backoff_policy"] == "reboot"


def test_duration_backoff_waits_resets_and_retries(make_device):
    rec = {"policy": "on-failure", "max_retries": 1, "retry_delay": 1, "backoff_policy": "10min"}
    dev = make_device(state_of(run_json("app1", auto_recovery=rec, **APP)))
    dev.step()
    dev.runtime.procs["app1"].exit(1)
    dev.step()
    dev.clock.advance(1)
    dev.step()
    dev.runtime.procs["app1"].exit(1)
    dev.step()
    assert dev.status("app1") == "RECOVERING"
    assert dev.entry("app1")["auto_recovery"]["backoff_policy"] == "10min"
    dev.clock.advance(599)
    dev.step()
    assert dev.status("app1") == "RECOVERING"
    dev.clock.advance(2)
    dev.step()
    assert dev.status("app1") == "STARTED"
    assert dev.entry("app1")["auto_recovery"]["current_retries"] == 0


def test_reset_window_forgets_old_crashes(make_device):
    rec = {"policy": "on-failure", "max_retries": 2, "retry_delay": 1, "reset_window": 60}
    dev = make_device(state_of(run_json("app1", auto_recovery=rec, **APP)))
    dev.step()
    dev.runtime.procs["app1"].exit(1)
    dev.step()
    dev.clock.advance(1)
    dev.step()
    assert dev.entry("app1")["auto_recovery"]["current_retries"] == 1
    dev.clock.advance(61)  # ran longer than the window
    dev.runtime.procs["app1"].exit(1)
    dev.step()
    assert dev.entry("app1")["auto_recovery"]["current_retries"] == 1


def test_group_default_recovery_and_stability(make_device):
    dev = make_device(demo_like())
    dev.step()
    # the group default is copied in at first start (docs/protocol.md §D4.7)
    assert "auto_recovery" not in dev.entry("client")
    dev.step()
    entry = dev.entry("client")
    assert entry["auto_recovery"] == {"policy": "on-failure", "max_retries": 5, "current_retries": 0,
                                      "stable_timeout": 30, "is_stable": "false", "backoff_policy": "reboot"}
    dev.clock.advance(30)
    dev.step()
    assert dev.entry("client")["auto_recovery"]["is_stable"] == "true"
    # default app recovery: 5 s, then 10 s
    dev.runtime.procs["client"].exit(1)
    dev.step()
    assert dev.entry("client")["auto_recovery"]["is_stable"] == "false"
    dev.clock.advance(5)
    dev.step()
    assert dev.status("client") == "STARTED"


def test_user_stop_is_not_recovered_and_start_clears_it(make_device):
    dev = make_device(demo_like())
    dev.step(2)
    first = dev.runtime.procs["client"]
    dev.engine.control("client", "stop")
    dev.step()
    assert first.code == -15
    assert dev.status("client") == "STOPPED"
    assert dev.entry("client")["user_stopped"] == "true"
    dev.clock.advance(100)
    dev.step(3)
    assert dev.status("client") == "STOPPED"
    dev.engine.control("client", "start")
    assert dev.entry("client")["user_stopped"] == "false"
    dev.step()
    assert dev.status("client") == "STARTED"
    assert dev.runtime.procs["client"] is not first


def test_restart_resets_retries_and_starts_a_new_process(make_device):
    dev = make_device(demo_like())
    dev.step(2)
    dev.runtime.procs["client"].exit(1)
    dev.step()
    dev.clock.advance(5)
    dev.step()
    assert dev.entry("client")["auto_recovery"]["current_retries"] == 1
    second = dev.runtime.procs["client"]
    dev.engine.control("client", "restart")
    dev.step()
    assert second.code == -15
    assert dev.status("client") == "STARTED"
    assert dev.runtime.procs["client"] is not second
    assert dev.entry("client")["auto_recovery"]["current_retries"] == 0


def test_stop_while_recovering(make_device):
    dev = make_device(demo_like())
    dev.step(2)
    dev.runtime.procs["client"].exit(1)
    dev.step()
    assert dev.status("client") == "RECOVERING"
    dev.engine.control("client", "stop")
    assert dev.status("client") == "STOPPED"
    dev.clock.advance(60)
    dev.step()
    assert dev.status("client") == "STOPPED"


@pytest.mark.parametrize("action,message", [
    ("start", "Container must be in STOPPED, STOPPING, or RECOVERING state to start"),
    ("restart", "Container state does not allow restart"),
])
def test_start_and_restart_refused_before_running(make_device, action, message):
    dev = make_device(demo_like())
    dev.step()
    assert dev.status("client") == "BLOCKED"
    with pytest.raises(BadRequest) as err:
        dev.engine.control("client", action)
    assert err.value.message == message


def test_start_of_running_is_a_no_op(make_device):
    dev = make_device(demo_like())
    dev.step(2)
    proc = dev.runtime.procs["client"]
    dev.engine.control("client", "start")
    dev.step()
    assert dev.runtime.procs["client"] is proc and proc.code is None


def test_stop_all_in_reverse_group_order(make_device):
    dev = make_device(demo_like())
    dev.step(2)
    assert dev.engine.stop_all() is True
    assert dev.runtime.stopped == ["client", "server", "sdk"]
    assert {e["status"] for e in dev.engine.container_list()} == {"STOPPED"}
    dev.step(3)
    assert dev.runtime.started.count("sdk") == 1  # nothing comes back by itself


def test_stop_before_first_start_keeps_it_down(make_device):
    dev = make_device(demo_like())
    dev.step()
    assert dev.status("client") == "BLOCKED"
    dev.engine.control("client", "stop")
    assert dev.status("client") == "STOPPED" and dev.entry("client")["user_stopped"] == "true"
    dev.step(3)
    assert "client" not in dev.runtime.started
    assert dev.runtime.started == ["sdk", "server"]


def test_start_while_stopping_restarts_once_stopped(make_device):
    dev = make_device(demo_like())
    dev.step(2)
    dev.engine.control("client", "stop")
    dev.engine.control("client", "start")  # stop still pending: start once it stopped
    dev.step()
    assert dev.status("client") == "STARTED"
    assert dev.runtime.started.count("client") == 2
    assert dev.entry("client")["user_stopped"] == "false"


def test_listing_body_is_kept_until_something_shown_changes(make_device):
    dev = make_device(demo_like())
    # handed over at start-up: listed, nothing started yet
    assert {e["status"] for e in json.loads(dev.engine.container_list_json())} == {"INSTALLED"}
    dev.step()
    first = dev.engine.container_list_json()
    assert dev.engine.container_list_json() is first  # nothing changed: nothing rendered
    dev.step()
    second = dev.engine.container_list_json()
    assert second != first and json.loads(second) == dev.engine.container_list()
    dev.engine.control("client", "stop")
    dev.step()
    assert dev.entry("client")["status"] == "STOPPED" and dev.entry("client")["user_stopped"] == "true"
