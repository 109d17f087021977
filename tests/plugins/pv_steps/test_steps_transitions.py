"""Revision transitions, carried out by pv_steps behind POST /commands, with a fake
engine and object store (docs/protocol.md §D3.2)."""
import json
import threading
import time
from types import SimpleNamespace

import pytest

import pv_commands
import pv_steps
from pv_steps.model import build
from pvcore import hookimpl
from pvcore.testing import wait_until

from steps_helpers import SHA_A, SHA_B, FakeEngine, WatchedSteps, make_rev, point_current, state_of


class FakeObjects:
    """Stands in for the object store: every object is there but those in ``missing``."""

    def __init__(self):
        self.missing = set()

    @hookimpl
    def pv_objects_missing(self, core, shas):
        return [sha for sha in shas if sha in self.missing]


class Activity:
    def __init__(self):
        self.activity = []

    @hookimpl
    def pvcore_activity(self, core, name, active):
        self.activity.append((name, active))


@pytest.fixture
def cmd_env(make_core, make_client):
    """``cmd_env(start=True, **overrides)`` → namespace with core, client, storage, engine, objects, device."""

    def build(start=True, **overrides):
        engine, objects, device = FakeEngine(), FakeObjects(), Activity()
        settings = {"update_commit_delay": 0.05, "update_goals_timeout": 7.0}
        settings.update(overrides)
        core = make_core(plugins=[pv_commands, pv_steps, engine, objects, device], overrides=settings)
        storage_dir = core.settings.storage_dir
        revisions = {"0": state_of("one", **{"one/root.squashfs": SHA_A}),
                     "locals/x": state_of("one", "two", **{"one/root.squashfs": SHA_A, "two/root.squashfs": SHA_B})}
        for rev, state in revisions.items():
            make_rev(storage_dir, rev, state)
        point_current(storage_dir, "0")
        storage = WatchedSteps(core, revisions)
        if start:
            core.start()
        client = make_client(core)

        def post(op, payload="", **kwargs):
            return client.simulate_post("/commands", body=json.dumps({"op": op, "payload": payload}), **kwargs)

        return SimpleNamespace(core=core, client=client, storage=storage, engine=engine, objects=objects,
                               device=device, post=post)

    return build


def updating(env):
    return env.core.stash[pv_steps.UPDATER].ongoing()


def final(env, rev, statuses=("UPDATED", "DONE", "WONTGO", "ERROR")):
    wait_until(lambda: env.storage.last_status(rev) in statuses, message=f"{rev} to reach a final state")
    wait_until(lambda: not updating(env))
    wait_until(lambda: env.core.stash[pv_commands.STATE].slot is None)
    return env.storage.statuses(rev)


def in_use(env):
    return env.core.stash[pv_steps.UPDATER].in_use()


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
    # a non-reboot transition: only the containers it changes restart
    assert (run.rev, run.only_changed, run.timeout) == ("locals/x", True, 7.0)
    assert run.revision == build("locals/x", env.storage.revisions["locals/x"])
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
    wait_until(lambda: any(e["event"] == "command_done" for e in log_output))
    progress = env.client.simulate_get("/steps/locals/nope/progress")
    assert (progress.status_code, progress.json["status"], progress.json["status-msg"]) == (
        200, "WONTGO", "State JSON not found")
    assert env.client.simulate_get("/steps/locals/nope").status_code == 404
    assert env.engine.runs == [] and env.storage.calls == []
    refused = [e for e in log_output if e["event"] == "revision_transition_refused"]
    assert refused and refused[0]["progress_written"] is True


def test_missing_object_is_error_and_nothing_runs(cmd_env):
    env = cmd_env()
    env.objects.missing.add(SHA_B)
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
    assert env.engine.runs[1].revision == build("0", env.storage.revisions["0"])
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
    assert env.engine.runs[0].revision == build("0", env.storage.revisions["locals/x"])
    assert env.storage.committed == "0"


def test_make_factory_without_revision_uses_running(cmd_env):
    env = cmd_env()
    point_current(env.core.settings.storage_dir, "locals/x")
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
        assert in_use(env) == ["locals/x"]
    finally:
        env.engine.gate.set()
    final(env, "locals/x")
    assert in_use(env) == []


def test_pending_transition_revision_is_in_use(cmd_env):
    env = cmd_env(start=False)
    env.post("TRY_ONCE", "locals/x")
    assert in_use(env) == ["locals/x"]


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
    set_running = env.storage.steps.set_running

    def refusing(rev, try_once=False):
        if rev == "locals/x":
            refused.append(rev)
            return False
        return set_running(rev, try_once)

    env.storage.steps.set_running = refusing
    env.post("LOCAL_RUN", "locals/x")
    assert final(env, "locals/x")[-1] == ("ERROR", "Internal error")
    assert refused == ["locals/x"]
    # nothing was switched, so nothing is rolled back: the running revision runs on untouched
    assert env.engine.runs == []
    assert env.storage.running == "0"


def _full_disk(monkeypatch, module, paths):
    """``atomic_write`` in ``module`` fails with ENOSPC for any path ending in one of ``paths``."""
    import errno

    real = module.atomic_write

    def atomic_write(path, data, *args, **kwargs):
        if full and path.endswith(paths):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, *args, **kwargs)

    full = [True]
    monkeypatch.setattr(module, "atomic_write", atomic_write)
    return full


def test_a_full_disk_ends_the_switch_in_error_shown_from_memory(cmd_env, monkeypatch):
    """Issue 27: the boot record cannot be written (ENOSPC), nor the progress saying so.
    The update ends ERROR naming the cause, read from memory; the running revision is
    untouched; the progress reaches the disk once there is space; a new LOCAL_RUN works."""
    import os
    from pv_steps import boot, trails

    env = cmd_env()
    storage_dir = env.core.settings.storage_dir
    progress_path = os.path.join(storage_dir, "trails", "locals", "x", ".pv", "progress")
    before = os.path.exists(progress_path) and open(progress_path, "rb").read()
    full = _full_disk(monkeypatch, boot, ("pv.json",))
    full_progress = _full_disk(monkeypatch, trails, ("progress", "logs"))
    env.post("LOCAL_RUN", "locals/x")
    wait_until(lambda: env.client.simulate_get("/steps/locals/x/progress").json.get("status") == "ERROR")
    wait_until(lambda: not updating(env))
    shown = env.client.simulate_get("/steps/locals/x/progress").json
    assert shown["status-msg"] == "Internal error: No space left on device"
    assert "could not record revision locals/x" in shown["logs"]
    listed = {e["name"]: e for e in env.client.simulate_get("/steps").json}
    assert listed["locals/x"]["progress"] == shown
    assert (os.path.exists(progress_path) and open(progress_path, "rb").read()) == before  # not on disk yet
    assert env.engine.runs == [] and env.storage.running == "0"
    assert env.storage.steps.boot_state().pv_try is None

    full.clear()
    full_progress.clear()
    env.storage.steps.trails.flush_progress()  # what the retry loop does every few seconds
    with open(progress_path, "rb") as fh:
        assert json.loads(fh.read()) == shown
    env.post("LOCAL_RUN", "locals/x")
    wait_until(lambda: env.storage.last_status("locals/x") == "UPDATED")
    assert env.storage.running == "locals/x"


def test_a_commit_refused_by_a_full_disk_ends_in_error_and_leaves_the_rollback_point(cmd_env, monkeypatch):
    """A reboot transition that passed its tests but cannot record the commit (ENOSPC on
    the boot record) ends ERROR naming the cause, as upstream's refused commit: the
    revision runs on uncommitted, the rollback point is still the old one."""
    from pv_steps import boot

    env = cmd_env(start=False, update_commit_delay=1.0)
    with_revision(env, "locals/r", state_of("one", **{"one/root.squashfs": SHA_A, "bsp/kernel.img": SHA_B}))
    env.core.start()
    full = _full_disk(monkeypatch, boot, ("pv.json",))
    full.clear()  # the switch records its try; the disk fills while the revision is tested
    env.post("LOCAL_RUN", "locals/r")
    wait_until(lambda: env.storage.last_status("locals/r") == "TESTING")
    full.append(True)
    statuses = final(env, "locals/r")
    assert statuses[-1] == ("ERROR", "Internal error: No space left on device")
    assert "could not set revision locals/r as the rollback point" in \
        env.client.simulate_get("/steps/locals/r/progress").json["logs"]
    assert env.storage.committed == "0"
    assert env.storage.running == "locals/r"
    assert env.storage.steps.boot_state().pv_try == "locals/r"  # the next boot rolls it back


def test_a_transition_sent_as_soon_as_the_last_one_is_updated_is_carried_out(cmd_env):
    """A client that reads UPDATED may send its next LOCAL_RUN at once (the slot is
    freed before the final progress is written). Before, the end of the first update
    then took the second one out of the slot: it stayed TESTING for ever, and the
    device said no update was under way."""
    env = cmd_env()
    updater = env.core.stash[pv_steps.UPDATER]
    real_progress = updater._progress
    sent = []

    def progress(rev, status, message, logs=None):
        if (rev, status) == ("locals/x", "UPDATED") and not sent:
            # between the freed slot and the end of locals/x: the next command arrives
            sent.append(env.post("LOCAL_RUN", "0").status_code)
            wait_until(lambda: updater.update is not None and updater.update.rev == "0", message="0 under way")
        real_progress(rev, status, message, logs)

    updater._progress = progress
    env.post("LOCAL_RUN", "locals/x")
    assert final(env, "locals/x")[-1][0] == "UPDATED"
    assert sent == [200]
    assert final(env, "0")[-1] == ("UPDATED", "Update finished, revision not set as rollback point")
    assert env.device.activity[-1] == ("update", False)
    assert env.storage.running == "0"


def test_a_held_progress_does_not_outlive_a_new_install(cmd_env, monkeypatch):
    """A revision put again while its ERROR waits for space reads NEW, and stays so."""
    from pv_steps import trails

    env = cmd_env()
    full = _full_disk(monkeypatch, trails, ("progress",))
    env.storage.steps.trails.write_progress("locals/x", "ERROR", "Internal error: No space left on device")
    assert env.client.simulate_get("/steps/locals/x/progress").json["status"] == "ERROR"
    full.clear()
    state = env.client.simulate_get("/steps/locals/x").json
    assert env.client.simulate_put("/steps/locals/x", body=json.dumps(state)).status_code == 200
    assert env.client.simulate_get("/steps/locals/x/progress").json["status"] == "NEW"
    env.storage.steps.trails.flush_progress()
    assert env.client.simulate_get("/steps/locals/x/progress").json["status"] == "NEW"


def test_engine_and_updater_name_containers_from_one_model(cmd_env, log_output):
    """Issue 19's divergence, from a state PUT /steps would refuse (run.json naming another
    container) that got onto the disk otherwise: the engine and the updater read the same
    revision model, so the name the engine publishes is the one the updater watches."""
    env = cmd_env(start=False, update_commit_delay=30.0)
    state = state_of("one", **{"one/root.squashfs": SHA_A})
    state["two/run.json"] = {"name": "other", "group": "app"}
    make_rev(env.core.settings.storage_dir, "locals/x", state)
    env.core.start()
    env.post("LOCAL_RUN", "locals/x")
    wait_until(lambda: env.storage.last_status("locals/x") == "TESTING")
    [run] = env.engine.runs
    assert list(run.revision.containers) == ["one", "other"]
    assert run.revision.containers["other"].folder == "two"
    # the engine publishes its containers by the model's name
    env.core.publish("container.status", "other", {"old": "READY", "new": "STOPPED", "rev": "locals/x"})
    assert final(env, "locals/x")[-1] == ("ERROR", "A container could not be started")
    assert [run.rev for run in env.engine.runs] == ["locals/x", "0"]


# -- reboot and non-reboot transitions (docs/protocol.md §D3.4) ---------------------------

REBOOT_PROGRESS = [
    ("INPROGRESS", "Rebooting"),
    ("INPROGRESS", "Trying new revision"),
    ("TESTING", "Awaiting to set rollback point if update is stable"),
    ("DONE", "Update finished, revision set as rollback point"),
]


def with_revision(env, rev, state):
    make_rev(env.core.settings.storage_dir, rev, state)
    env.storage.revisions[rev] = state


@pytest.mark.parametrize("change", ["root", "bsp", "system container", "config of a system container",
                                    "config of no container"])
def test_reboot_transition_on_the_demo_device_runs_in_place_and_ends_done(cmd_env, change):
    env = cmd_env(start=False)
    state = state_of("one", **{"one/root.squashfs": SHA_A})
    if change == "root":
        state["device.json"] = {"groups": [{"name": "app"}]}
    elif change == "bsp":
        state["bsp/kernel.img"] = SHA_B
    elif change == "system container":
        state["one/run.json"] = {"name": "one", "group": "app", "restart_policy": "system"}
        with_revision(env, "0", state_of("one", **{"one/root.squashfs": SHA_A, "one/run.json": dict(
            state["one/run.json"])}))
        state["one/root.squashfs"] = SHA_B
    elif change == "config of a system container":
        state["one/run.json"] = {"name": "one", "group": "app", "restart_policy": "system"}
        with_revision(env, "0", dict(state))
        state["_config/one/etc/x.conf"] = SHA_B
    else:
        state["_config/nobody/etc/x.conf"] = SHA_B
    with_revision(env, "locals/r", state)
    env.core.start()
    env.post("LOCAL_RUN", "locals/r")
    assert final(env, "locals/r") == REBOOT_PROGRESS
    assert env.engine.stops == 1
    [run] = env.engine.runs
    assert (run.rev, run.only_changed) == ("locals/r", False)
    assert env.storage.committed == "locals/r"


def test_non_reboot_transition_restarts_only_what_changed_and_ends_updated(cmd_env):
    env = cmd_env(start=False)
    with_revision(env, "locals/c", state_of("one", **{"one/root.squashfs": SHA_B, "_config/one/a": SHA_A}))
    env.core.start()
    env.post("LOCAL_RUN", "locals/c")
    assert final(env, "locals/c")[-1] == ("UPDATED", "Update finished, revision not set as rollback point")
    assert env.engine.stops == 0
    assert [(run.rev, run.only_changed) for run in env.engine.runs] == [("locals/c", True)]
    assert env.storage.committed == "0"


def test_failed_non_reboot_transition_rolls_back_only_what_it_changed(cmd_env):
    env = cmd_env()
    env.engine.fail.add("locals/x")
    env.post("LOCAL_RUN", "locals/x")
    assert final(env, "locals/x")[-1][0] == "ERROR"
    assert [(run.rev, run.only_changed) for run in env.engine.runs] == [("locals/x", True), ("0", True)]


class RealPower:
    """A power backend that reboots a real device (no ``demo``)."""

    def __init__(self):
        self.reboots = []

    @hookimpl(tryfirst=True)
    def pv_commands_power_backend(self, core):
        return self

    def reboot(self, message):
        self.reboots.append(message)

    def poweroff(self, message):
        raise AssertionError("no poweroff expected")


@pytest.mark.parametrize("fails", [False, True])
def test_reboot_transition_on_a_real_device_reboots_and_the_next_boot_finishes_it(
        make_core, make_client, fails):
    power, engine = RealPower(), FakeEngine()
    settings = {"update_commit_delay": 0.05, "update_goals_timeout": 7.0}
    core = make_core(plugins=[pv_commands, pv_steps, engine, power], overrides=settings)
    storage_dir = core.settings.storage_dir
    make_rev(storage_dir, "0", state_of("one"))
    make_rev(storage_dir, "locals/r", state_of("one", **{"device.json": {"groups": [{"name": "app"}]}}))
    point_current(storage_dir, "0")
    core.start()
    client = make_client(core)
    client.simulate_post("/commands", body=json.dumps({"op": "LOCAL_RUN", "payload": "locals/r"}))
    wait_until(lambda: power.reboots)
    steps = core.stash[pv_steps.STEPS]
    assert steps.trails.progress_of("locals/r") == ("INPROGRESS", "Rebooting")
    assert engine.runs == []  # the device reboots: nothing runs here
    assert (steps.boot_state().pv_try, steps.trails.running()) == ("locals/r", "locals/r")
    core.stop()

    # the next boot: the try runs, the update is carried on
    engine2 = FakeEngine()
    if fails:
        engine2.fail.add("locals/r")
    power2 = RealPower()
    core2 = make_core(plugins=[pv_commands, pv_steps, engine2, power2], overrides=dict(
        settings, storage_dir=storage_dir))
    core2.start()
    steps2 = core2.stash[pv_steps.STEPS]
    final_status = "ERROR" if fails else "DONE"
    wait_until(lambda: steps2.trails.progress_status("locals/r") == final_status)
    wait_until(lambda: not core2.stash[pv_steps.UPDATER].ongoing())
    if fails:
        assert steps2.trails.progress_of("locals/r") == ("ERROR", "Status goal not reached")
        assert steps2.boot_state().pv_rev == "0" and steps2.trails.running() == "0"
        wait_until(lambda: power2.reboots)  # rolled back by rebooting into the committed revision
    else:
        assert steps2.trails.progress_of("locals/r") == ("DONE", "Update finished, revision set as rollback point")
        assert steps2.boot_state().pv_rev == "locals/r"
        assert power2.reboots == []
    assert [(run.rev, run.only_changed) for run in engine2.runs] == [("locals/r", True)]
    core2.stop()


def test_try_once_never_reboots_nor_commits(cmd_env):
    env = cmd_env(start=False)
    with_revision(env, "locals/r", state_of("one", **{"one/root.squashfs": SHA_A, "bsp/kernel.img": SHA_B}))
    env.core.start()
    env.post("TRY_ONCE", "locals/r")
    assert final(env, "locals/r")[-1][0] == "UPDATED"
    assert [(run.rev, run.only_changed) for run in env.engine.runs] == [("locals/r", False)]
    assert env.storage.committed == "0"


# -- TESTING: stability and used-up retries (docs/protocol.md §D3.2) ------------------------

def test_commit_waits_until_every_container_is_stable(cmd_env):
    env = cmd_env()
    env.engine.unstable = ["two"]
    env.post("LOCAL_RUN", "locals/x")
    wait_until(lambda: ("TESTING", "Waiting for all containers to become stable") in env.storage.statuses("locals/x"))
    time.sleep(0.5)  # ten commit delays
    assert env.storage.last_status("locals/x") == "TESTING" and updating(env)
    env.engine.unstable = []
    assert final(env, "locals/x") == [
        ("INPROGRESS", "Transitioning to new revision without rebooting"),
        ("TESTING", "Awaiting to see if update is stable"),
        ("TESTING", "Waiting for all containers to become stable"),
        ("UPDATED", "Update finished, revision not set as rollback point"),
    ]


@pytest.mark.parametrize("new", ["RECOVERING", "STOPPED"])
def test_retries_used_up_while_testing_roll_back_whatever_the_backoff_policy(cmd_env, new):
    env = cmd_env()
    env.engine.unstable = ["two"]
    env.post("LOCAL_RUN", "locals/x")
    wait_until(lambda: ("TESTING", "Waiting for all containers to become stable") in env.storage.statuses("locals/x"))
    env.core.publish("container.status", "two", {"old": "STARTED", "new": new, "rev": "locals/x",
                                                  "recovery_exhausted": True})
    assert final(env, "locals/x")[-1] == ("ERROR", "A container could not be started")
    assert env.storage.running == "0"


def test_a_crash_that_recovers_while_testing_is_no_rollback(cmd_env):
    env = cmd_env(update_commit_delay=0.3)
    env.post("LOCAL_RUN", "locals/x")
    wait_until(lambda: env.storage.last_status("locals/x") == "TESTING")
    env.core.publish("container.status", "two", {"old": "STARTED", "new": "RECOVERING", "rev": "locals/x"})
    assert final(env, "locals/x")[-1][0] == "UPDATED"


def test_goals_timeout_comes_from_the_configuration(make_core, make_client):
    import pv_config

    engine = FakeEngine()
    core = make_core(plugins=[pv_config, pv_commands, pv_steps, engine], overrides={
        "update_commit_delay": 0.05, "config_environ": lambda: {"PV_UPDATER_GOALS_TIMEOUT": "9"}})
    make_rev(core.settings.storage_dir, "0", state_of("one"))
    make_rev(core.settings.storage_dir, "locals/x", state_of("one", "two"))
    point_current(core.settings.storage_dir, "0")
    core.start()
    make_client(core).simulate_post("/commands", body=json.dumps({"op": "LOCAL_RUN", "payload": "locals/x"}))
    wait_until(lambda: engine.runs)
    assert engine.runs[0].timeout == 9.0


def test_an_unknown_revision_on_a_full_disk_still_reads_wontgo(cmd_env, monkeypatch):
    """The WONTGO a LOCAL_RUN of a missing revision records (§D3.2) is shown from memory
    when the disk refuses it, and appears on disk once it has space."""
    import os
    from pv_steps import trails

    env = cmd_env()
    full = _full_disk(monkeypatch, trails, ("progress",))
    env.post("LOCAL_RUN", "locals/nope")
    wait_until(lambda: env.client.simulate_get("/steps/locals/nope/progress").status_code == 200)
    shown = env.client.simulate_get("/steps/locals/nope/progress").json
    assert (shown["status"], shown["status-msg"]) == ("WONTGO", "State JSON not found")
    path = os.path.join(env.core.settings.storage_dir, "trails", "locals", "nope", ".pv", "progress")
    assert not os.path.exists(path)
    full.clear()
    assert env.storage.steps.trails.flush_progress()
    with open(path, "rb") as fh:
        assert json.loads(fh.read()) == shown
