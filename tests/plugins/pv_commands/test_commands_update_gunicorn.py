"""Black-box: revision transitions on the demo device, over a real gunicorn with
the real storage (pv_steps, pv_objects) and engine (pv_containers) plugins."""
import hashlib
import json
import os

import pytest

from pvcore.supervisor import process_running as _alive
from pvcore.testing import wait_until

from commands_helpers import command, get
from steps_helpers import put_revision

pytestmark = pytest.mark.gunicorn

SERVER = "pv-example-unix-server"
CLIENT = "pv-example-unix-client"
FINAL = ("UPDATED", "DONE", "WONTGO", "ERROR")
#: upstream's default groups, but a 1 s stable_timeout for the app group (upstream's is 30 s)
QUICK_GROUPS = os.path.join(os.path.dirname(__file__), "..", "pv_steps", "groups_quick.json")
ENV = {"PVCORE_UPDATE_COMMIT_DELAY": "0.3", "PVCORE_DEFAULT_GROUPS_FILE": QUICK_GROUPS}


@pytest.fixture
def device(start_gunicorn):
    server = start_gunicorn(demo=True, env=ENV)
    wait_until(lambda: statuses(server) == {SERVER: "READY", CLIENT: "READY", "pvr-sdk": "STARTED"},
               timeout=20, message="the demo device to come up")
    return server


def statuses(server):
    return {c["name"]: c["status"] for c in get(server, "/containers")}


def started_pids(server, name):
    return [e["child_pid"] for e in server.log_events()
            if e.get("event") == "container_started" and e.get("container") == name]


def run_until_final(server, op, rev, timeout=30):
    status, _, body = command(server, op, rev)
    assert status == 200, body
    seen = []

    def final():
        progress = get(server, f"/steps/{rev}/progress")
        if not seen or seen[-1] != progress["status"]:
            seen.append(progress["status"])
        return progress if progress["status"] in FINAL else None

    return wait_until(final, timeout=timeout, message=f"{rev} to reach a final state"), seen


def changed_server(state):
    run = state[f"{SERVER}/run.json"]
    run["exec"] = run["exec"] + ["--exit-after", "100000"]


def without_client(state):
    for key in [k for k in state if k.startswith(CLIENT + "/")]:
        del state[key]


def broken_container(state, **extra):
    run = dict(state[f"{SERVER}/run.json"], name="broken", status_goal="READY",
               auto_recovery={"policy": "no"}, **extra)
    run.pop("restart_policy", None)
    for key in ("lxc.container.conf", "root.squashfs"):
        state[f"broken/{key}"] = state[f"{SERVER}/{key}"]
    state["broken/run.json"] = run


def test_local_run_brings_up_the_new_revision(device):
    def change(state):
        changed_server(state)
        without_client(state)

    state = put_revision(device, "x", change)
    old_pid = started_pids(device, SERVER)[-1]
    progress, seen = run_until_final(device, "LOCAL_RUN", "locals/x")
    assert progress["status-msg"] == "Update finished, revision not set as rollback point"
    assert progress["progress"] == 100
    assert seen[-2:] == ["TESTING", "UPDATED"]
    assert get(device, "/steps/current") == state
    wait_until(lambda: statuses(device) == {SERVER: "READY", "pvr-sdk": "STARTED"}, timeout=10)
    assert started_pids(device, SERVER)[-1] != old_pid
    assert get(device, "/_pvcore/health")["revision"] == "locals/x"


def test_broken_revision_rolls_back(device):
    put_revision(device, "broken", lambda s: broken_container(
        s, exec=s[f"{SERVER}/run.json"]["exec"][:3] + ["--exit-after", "0"]))
    progress, seen = run_until_final(device, "LOCAL_RUN", "locals/broken")
    assert progress["status"] == "ERROR"
    assert progress["status-msg"] == "A container could not be started"
    assert "TESTING" not in seen
    assert get(device, "/_pvcore/health")["revision"] == "0"
    assert get(device, "/steps/current") == get(device, "/steps/0")
    wait_until(lambda: statuses(device) == {SERVER: "READY", CLIENT: "READY", "pvr-sdk": "STARTED"}, timeout=15)
    assert any(e.get("event") == "revision_transition_failed" for e in device.log_events())


def groups_with_app_timeout(timeout):
    with open(QUICK_GROUPS) as fh:
        groups = json.load(fh)
    groups[-1]["timeout"] = timeout
    return groups


def test_busy_while_a_revision_comes_up_then_goal_timeout_rolls_back(start_gunicorn):
    server = start_gunicorn(demo=True, env=ENV)

    def slow(state):
        # a container that stays up but never signals READY: the transition waits for the goal
        broken_container(state, exec=state[f"{SERVER}/run.json"]["exec"][:3])
        state["device.json"] = {"groups": groups_with_app_timeout(3)}

    put_revision(server, "slow", slow)
    assert command(server, "LOCAL_RUN", "locals/slow")[0] == 200
    wait_until(lambda: get(server, "/steps/locals/slow/progress")["status"] == "INPROGRESS")
    status, headers, body = command(server, "LOCAL_RUN", "0")
    assert (status, json.loads(body)) == (503, {"Error": "Cannot do this operation while update is ongoing"})
    assert headers["Retry-After"] == "600"
    status, headers, body = command(server, "RUN_GC")
    assert (status, json.loads(body)) == (503, {"Error": "A command is already in progress. Try again"})
    assert headers["Retry-After"] == "120"
    progress = wait_until(lambda: (lambda p: p if p["status"] in FINAL else None)(
        get(server, "/steps/locals/slow/progress")), timeout=20)
    assert (progress["status"], progress["status-msg"]) == ("ERROR", "Status goal not reached")
    assert get(server, "/_pvcore/health")["revision"] == "0"


def test_try_once_is_forgotten_after_restart(device):
    state = put_revision(device, "once", changed_server)
    progress, _ = run_until_final(device, "TRY_ONCE", "locals/once")
    assert progress["status"] == "UPDATED"
    assert get(device, "/steps/current") == state
    device.stop()
    device.start()
    assert get(device, "/_pvcore/health")["revision"] == "0"
    assert get(device, "/steps/current") == get(device, "/steps/0")
    wait_until(lambda: statuses(device) == {SERVER: "READY", CLIENT: "READY", "pvr-sdk": "STARTED"}, timeout=20)


def test_local_run_commit_survives_restart(device):
    state = put_revision(device, "keep", changed_server)
    progress, _ = run_until_final(device, "LOCAL_RUN_COMMIT", "locals/keep")
    assert (progress["status"], progress["status-msg"]) == ("DONE", "Update finished, revision set as rollback point")
    device.stop()
    device.start()
    assert get(device, "/_pvcore/health")["revision"] == "locals/keep"
    assert get(device, "/steps/current") == state


def test_local_apply_restarts_only_the_changed_container(device):
    put_revision(device, "apply", changed_server)
    before = {name: started_pids(device, name)[-1] for name in (SERVER, CLIENT, "pvr-sdk")}
    progress, _ = run_until_final(device, "LOCAL_APPLY", "locals/apply")
    assert progress["status"] == "UPDATED"
    after = {name: started_pids(device, name)[-1] for name in (SERVER, CLIENT, "pvr-sdk")}
    assert after[SERVER] != before[SERVER]
    assert after[CLIENT] == before[CLIENT] and after["pvr-sdk"] == before["pvr-sdk"]


def test_demo_poweroff_leaves_no_orphan(device):
    pids = [e["child_pid"] for e in device.log_events() if e.get("event") == "process_spawned"]
    assert pids and all(_alive(pid) for pid in pids)
    assert command(device, "POWEROFF_DEVICE", "test shutdown")[0] == 200
    assert device.proc.wait(40) == 0
    assert not os.path.exists(device.socket)
    assert [pid for pid in pids if _alive(pid)] == []


def test_demo_reboot_goes_back_to_the_committed_revision(device):
    put_revision(device, "again", changed_server)
    progress, _ = run_until_final(device, "TRY_ONCE", "locals/again")
    assert progress["status"] == "UPDATED"
    worker = device.worker_pid()
    # The update slot is free before UPDATED is visible, so a reboot sent on
    # reading it is accepted at once (no transient 503).
    assert command(device, "REBOOT_DEVICE", "test reboot")[0] == 200
    wait_until(lambda: device.worker_pid() not in (None, worker), timeout=40, message="a new worker")
    device.wait_healthy()
    assert get(device, "/_pvcore/health")["revision"] == "0"
    wait_until(lambda: statuses(device) == {SERVER: "READY", CLIENT: "READY", "pvr-sdk": "STARTED"}, timeout=20)


def test_container_dying_while_testing_rolls_back(start_gunicorn):
    server = start_gunicorn(demo=True, env=dict(ENV, PVCORE_UPDATE_COMMIT_DELAY="30"))
    # READY at once, then exits after a second: during TESTING, with no auto-recovery
    put_revision(server, "flaky", lambda s: broken_container(
        s, exec=s[f"{SERVER}/run.json"]["exec"][:3] + ["--ready", "--exit-after", "1"]))
    progress, seen = run_until_final(server, "LOCAL_RUN", "locals/flaky")
    assert "TESTING" in seen
    assert (progress["status"], progress["status-msg"]) == ("ERROR", "A container could not be started")
    assert get(server, "/_pvcore/health")["revision"] == "0"


def test_run_gc_removes_unreferenced_objects(start_gunicorn):
    server = start_gunicorn(demo=True, env=dict(ENV, PVCORE_STORAGE_GC_GRACE="0"))
    data = b"an object no revision references\n"
    sha = hashlib.sha256(data).hexdigest()
    assert server.request("PUT", f"/objects/{sha}", data)[0] == 200
    assert sha in {o["sha256"] for o in get(server, "/objects")}
    assert command(server, "RUN_GC")[0] == 200
    wait_until(lambda: sha not in {o["sha256"] for o in get(server, "/objects")}, message="the object to go")
    done = wait_until(lambda: [e for e in server.log_events() if e.get("event") == "garbage_collected"])
    assert done[0]["reclaimed"] >= len(data)
    # revision 0's objects are still there
    assert get(server, "/steps/0") and len(get(server, "/objects")) > 0


def _watch_local_run(device, rev):
    from pvcore.testing import StreamReader

    with StreamReader(device.socket, "/_pvcore/events?types=command,revision,container.status") as watcher:
        status, _, body = command(device, "LOCAL_RUN", rev)
        assert status == 200, body
        return watcher.events_until(lambda e: e["type"] == "revision.progress" and e["subject"] == rev
                                    and e["data"]["status"] in FINAL, timeout=30)


def test_a_local_run_can_be_watched_from_request_to_outcome(device):
    put_revision(device, "watched", changed_server)
    events = _watch_local_run(device, "locals/watched")
    kinds = [(e["type"], e["subject"]) for e in events]
    assert kinds[0] == ("command.accepted", "LOCAL_RUN")
    assert events[0]["data"]["payload"] == "locals/watched"
    progress = [e["data"]["status"] for e in events if e["type"] == "revision.progress"]
    assert progress[0] == "INPROGRESS" and progress[-2:] == ["TESTING", "UPDATED"]
    assert ("revision.running", "locals/watched") in kinds
    finished = next(e for e in events if e["type"] == "command.finished")
    assert finished["data"]["ok"] is True
    restarted = [e["data"]["new"] for e in events if e["type"] == "container.status" and e["subject"] == SERVER]
    assert restarted[-1] == "READY"
    ids = [e["id"] for e in events]
    assert ids == sorted(ids)
    # What the stream said is what the API says.
    assert get(device, "/steps/locals/watched/progress") == next(
        e["data"] for e in reversed(events) if e["type"] == "revision.progress")


def test_a_rollback_can_be_watched_too(device):
    put_revision(device, "doomed", lambda s: broken_container(
        s, exec=s[f"{SERVER}/run.json"]["exec"][:3] + ["--exit-after", "0"]))
    events = _watch_local_run(device, "locals/doomed")
    assert events[-1]["data"]["status"] == "ERROR"
    running = [e["subject"] for e in events if e["type"] == "revision.running"]
    assert running[-1] == "0"  # back where it came from


def test_local_run_of_an_unknown_revision_records_wontgo(device):
    before = get(device, "/steps/current")
    for rev in ("locals/nowhere", "42"):
        assert command(device, "LOCAL_RUN", rev)[0] == 200

        def recorded():
            status, _, body = device.request("GET", f"/steps/{rev}/progress")
            return status == 200 and json.loads(body)

        progress = wait_until(recorded, message=f"{rev}'s progress")
        assert progress == {"status": "WONTGO", "status-msg": "State JSON not found", "progress": 100, "retries": 0}
        assert device.request("GET", f"/steps/{rev}")[0] == 404
    # nothing else moved: same revision, same containers
    assert get(device, "/steps/current") == before
    assert get(device, "/_pvcore/health")["revision"] == "0"
    assert statuses(device) == {SERVER: "READY", CLIENT: "READY", "pvr-sdk": "STARTED"}
    # a name that could never be a revision records nothing anywhere
    wait_until(lambda: command(device, "LOCAL_RUN", "locals/../../x")[0] == 200, message="the slot to free")
    wait_until(lambda: any(e.get("event") == "command_done" and e.get("payload") == "locals/../../x"
                           for e in device.log_events()), message="the command to run")
    assert not os.path.exists(os.path.join(device.storage_dir, "x"))
