"""Revision transitions driven through fake storage and engine (device-model §3.2, §3.3)."""
import threading

import pytest

import pv_commands
from pvcore import hookimpl
from pvcore.testing import wait_until

SHA_B = "b" * 64  # an object of locals/x in the fake storage


def final(env, rev, statuses=("UPDATED", "DONE", "WONTGO", "ERROR")):
    wait_until(lambda: env.storage.last_status(rev) in statuses, message=f"{rev} to reach a final state")
    wait_until(lambda: env.core.stash[pv_commands.STATE].update is None)
    wait_until(lambda: env.core.stash[pv_commands.STATE].slot is None)
    return env.storage.statuses(rev)


def test_local_run_goes_through_testing_to_updated(cmd_env, log_output):
    env = cmd_env()
    assert env.post("LOCAL_RUN", "locals/x").status_code == 200
    assert final(env, "locals/x") == [
        ("INPROGRESS", "Transitioning to new revision without rebooting"),
        ("TESTING", "Awaiting to see if update is stable"),
        ("UPDATED", "Update finished, revision not set as rollback point"),
    ]
    assert env.storage.calls == [("set_running", "locals/x", False)]
    assert env.storage.committed == "0"
    [run] = env.engine.runs
    assert (run.rev, run.only_changed, run.timeout) == ("locals/x", False, 7.0)
    assert run.state == env.storage.revisions["locals/x"]
    assert env.device.activity == [("update", True), ("update", False)]
    events = [e["event"] for e in log_output]
    for name in ("command_accepted", "command_started", "revision_transition_started", "revision_testing",
                 "revision_transition_done", "command_done"):
        assert name in events


def test_local_run_commit_ends_done_and_committed(cmd_env):
    env = cmd_env()
    env.post("LOCAL_RUN_COMMIT", "locals/x")
    statuses = final(env, "locals/x")
    assert statuses[-1] == ("DONE", "Update finished, revision set as rollback point")
    assert env.storage.committed == "locals/x"
    assert ("commit", "locals/x") in env.storage.calls


def test_try_once_runs_uncommitted(cmd_env):
    env = cmd_env()
    env.post("TRY_ONCE", "locals/x")
    assert final(env, "locals/x")[-1][0] == "UPDATED"
    assert env.storage.calls == [("set_running", "locals/x", True)]
    assert env.storage.committed == "0"


def test_local_apply_restarts_only_changed_containers(cmd_env):
    env = cmd_env()
    env.post("LOCAL_APPLY", "locals/x")
    assert final(env, "locals/x")[-1][0] == "UPDATED"
    assert [run.only_changed for run in env.engine.runs] == [True]


def test_unknown_revision_is_wontgo(cmd_env, log_output):
    env = cmd_env()
    env.post("LOCAL_RUN", "locals/nope")
    wait_until(lambda: env.storage.statuses("locals/nope"))
    wait_until(lambda: any(e["event"] == "command_done" for e in log_output))
    assert env.storage.statuses("locals/nope") == [("WONTGO", "State JSON not found")]
    assert env.engine.runs == [] and env.storage.calls == []
    assert any(e["event"] == "revision_transition_refused" for e in log_output)


def test_missing_object_is_error_and_nothing_runs(cmd_env):
    env = cmd_env()
    env.storage.missing.add(SHA_B)
    env.post("LOCAL_RUN", "locals/x")
    assert final(env, "locals/x") == [("ERROR", "Object validation went wrong")]
    assert env.engine.runs == [] and env.storage.calls == []
    assert env.device.activity == []


@pytest.mark.parametrize("failure", ["fail", "raises"])
def test_failed_transition_rolls_back(cmd_env, log_output, failure):
    env = cmd_env()
    getattr(env.engine, failure).add("locals/x")
    env.post("LOCAL_RUN", "locals/x")
    statuses = final(env, "locals/x")
    message = "Status goal not reached" if failure == "fail" else "Internal error"
    assert statuses == [("INPROGRESS", "Transitioning to new revision without rebooting"), ("ERROR", message)]
    assert env.storage.calls == [("set_running", "locals/x", False), ("set_running", "0", False)]
    assert [run.rev for run in env.engine.runs] == ["locals/x", "0"]
    assert env.engine.runs[1].state == env.storage.revisions["0"]
    assert env.storage.running == "0"
    assert env.device.activity == [("update", True), ("update", False)]
    failed = [e for e in log_output if e["event"] == "revision_transition_failed"]
    assert failed and failed[0]["reason"] == message
    assert any(e["event"] == "revision_rolled_back" for e in log_output)
    # the update is over: another transition is accepted
    assert env.post("LOCAL_RUN", "locals/x").status_code == 200


def test_make_factory_copies_then_runs_zero_committed(cmd_env):
    env = cmd_env()
    env.post("MAKE_FACTORY", "locals/x")
    assert final(env, "0")[-1] == ("DONE", "Update finished, revision set as rollback point")
    assert env.storage.calls[0] == ("make_factory", "locals/x")
    assert [run.rev for run in env.engine.runs] == ["0"]
    assert env.engine.runs[0].state == env.storage.revisions["locals/x"]
    assert env.storage.committed == "0"


def test_make_factory_without_revision_uses_running(cmd_env):
    env = cmd_env()
    env.storage.running = "locals/x"
    env.post("MAKE_FACTORY", "")
    final(env, "0")
    assert env.storage.calls[0] == ("make_factory", "locals/x")


def test_make_factory_failure_runs_nothing(cmd_env, log_output):
    env = cmd_env()
    env.post("MAKE_FACTORY", "locals/gone")
    wait_until(lambda: any(e["event"] == "command_done" for e in log_output))
    assert env.engine.runs == []
    assert [e["ok"] for e in log_output if e["event"] == "command_done"] == [False]


def test_revision_in_flight_is_in_use(cmd_env):
    env = cmd_env()
    env.engine.gate = threading.Event()
    try:
        env.post("LOCAL_RUN", "locals/x")
        assert env.engine.running.wait(5)
        in_use = [r for group in env.core.hook.pv_steps_revisions_in_use(core=env.core) for r in group]
        assert in_use == ["locals/x"]
    finally:
        env.engine.gate.set()
    final(env, "locals/x")
    assert [r for group in env.core.hook.pv_steps_revisions_in_use(core=env.core) for r in group] == []


def test_pending_transition_revision_is_in_use(cmd_env):
    env = cmd_env(start=False)
    env.post("TRY_ONCE", "locals/x")
    assert [r for group in env.core.hook.pv_steps_revisions_in_use(core=env.core) for r in group] == ["locals/x"]


def test_stop_during_testing_abandons_the_update(cmd_env, log_output):
    env = cmd_env(update_commit_delay=30.0)
    env.post("LOCAL_RUN", "locals/x")
    wait_until(lambda: env.storage.last_status("locals/x") == "TESTING")
    env.core.stop()
    assert env.storage.last_status("locals/x") == "TESTING"
    assert env.device.activity[-1] == ("update", False)
    assert any(e["event"] == "revision_transition_interrupted" for e in log_output)


def test_container_dying_while_testing_rolls_back(cmd_env, log_output):
    env = cmd_env(update_commit_delay=30.0)
    env.post("LOCAL_RUN", "locals/x")
    wait_until(lambda: env.storage.last_status("locals/x") == "TESTING")
    def status(name, old, new):
        env.core.publish("container.status", name, {"old": old, "new": new, "rev": "locals/x"})

    status("two", "STOPPING", "STOPPED")  # a requested stop
    status("elsewhere", "READY", "STOPPED")  # not in the revision
    assert env.storage.last_status("locals/x") == "TESTING"
    status("two", "READY", "STOPPED")
    statuses = final(env, "locals/x")
    assert statuses[-1] == ("ERROR", "A container could not be started")
    assert env.storage.calls[-1] == ("set_running", "0", False)
    assert [run.rev for run in env.engine.runs] == ["locals/x", "0"]
    assert any(e["event"] == "container_died_while_testing" for e in log_output)


def test_container_dying_after_the_update_is_not_a_rollback(cmd_env):
    env = cmd_env()
    env.post("LOCAL_RUN", "locals/x")
    final(env, "locals/x")
    env.core.publish("container.status", "two", {"old": "READY", "new": "STOPPED", "rev": "locals/x"})
    assert env.storage.last_status("locals/x") == "UPDATED"
    assert [run.rev for run in env.engine.runs] == ["locals/x"]


def test_storage_refusing_the_switch_is_an_error(cmd_env):
    env = cmd_env()
    refused = []

    class Refusing:
        @hookimpl(tryfirst=True)
        def pv_steps_set_running_revision(self, core, rev, try_once):
            if rev == "locals/x":
                refused.append(rev)
                return False
            return None

    env.core.pm.register(Refusing())
    env.post("LOCAL_RUN", "locals/x")
    assert final(env, "locals/x")[-1] == ("ERROR", "Internal error")
    assert refused == ["locals/x"]
    assert [run.rev for run in env.engine.runs] == ["0"]  # only the rollback ran
