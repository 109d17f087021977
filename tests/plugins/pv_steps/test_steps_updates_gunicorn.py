"""Black-box: updates on the demo device as upstream's updates.md describes them, over a real
socket (issue 25 points 2, 3, 4; docs/protocol.md §D3.2, §D3.4, §D5.2).

The demo device's groups come from ``groups_quick.json`` (upstream's defaults with a 1 s
app ``stable_timeout`` instead of 30 s), so the stability hold costs a second, not thirty.
"""
import json
import os

import pytest

from pvcore.testing import wait_until
from steps_helpers import put_revision

pytestmark = pytest.mark.gunicorn

SERVER = "pv-example-unix-server"
CLIENT = "pv-example-unix-client"
SDK = "pvr-sdk"
QUICK_GROUPS = os.path.join(os.path.dirname(__file__), "groups_quick.json")
ENV = {"PVCORE_UPDATE_COMMIT_DELAY": "0.3", "PVCORE_DEFAULT_GROUPS_FILE": QUICK_GROUPS}
FINAL = ("UPDATED", "DONE", "WONTGO", "ERROR")
STABILITY_WAIT = ("TESTING", "Waiting for all containers to become stable")
ALL_UP = {SERVER: "READY", CLIENT: "READY", SDK: "STARTED"}


def get(server, path):
    status, _, body = server.request("GET", path)
    assert status == 200, (path, body)
    return json.loads(body)


def statuses(server):
    return {c["name"]: c["status"] for c in get(server, "/containers")}


def pids(server):
    """The pid each container last started with (``container_started`` log events)."""
    found = {}
    for e in server.log_events():
        if e.get("event") == "container_started":
            found[e["container"]] = e["child_pid"]
    return found


def device(start_gunicorn, **env):
    server = start_gunicorn(demo=True, env=dict(ENV, **env))
    wait_until(lambda: statuses(server) == ALL_UP, timeout=20, message="the demo device to come up")
    return server


def run(server, op, rev, timeout=30):
    """Send ``op``; wait for a final progress; every progress written on the way, in order."""
    status, _, body = server.request("POST", "/commands", json.dumps({"op": op, "payload": rev}))
    assert status == 200, body
    wait_until(lambda: get(server, f"/steps/{rev}/progress")["status"] in FINAL, timeout=timeout,
               message=f"{rev} to reach a final state")

    def logged():
        seen = [(e["status"], e["message"]) for e in progress_events(server, rev)]
        return seen if seen and seen[-1][0] in FINAL else None

    # the log line follows the progress write
    return wait_until(logged, timeout=5, message="the final progress in the log")


def progress_events(server, rev):
    return [e for e in server.log_events() if e.get("event") == "revision_progress" and e.get("rev") == rev]


def held(progress):
    """``progress`` without the stability hold, which the app group's 1 s stable_timeout may add."""
    return [p for p in progress if p != STABILITY_WAIT]


def app_container(state, name, argv, **run):
    """Add container ``name`` to the app group (restart policy ``container``), running the demo program."""
    base = state[f"{SERVER}/run.json"]
    manifest = dict(base, name=name, status_goal="STARTED")
    manifest.update(run)
    manifest["exec"] = base["exec"][:3] + argv
    for key in ("lxc.container.conf", "root.squashfs"):
        state[f"{name}/{key}"] = state[f"{SERVER}/{key}"]
    state[f"{name}/run.json"] = manifest


def groups(app_timeout=None):
    with open(QUICK_GROUPS) as fh:
        entries = json.load(fh)
    entries[-1].pop("timeout")
    if app_timeout is not None:
        entries[-1]["timeout"] = app_timeout
    return entries


# -- point 2: TESTING holds the commit, used-up retries roll back ---------------------------


def test_a_crash_looping_app_is_rolled_back_not_updated(start_gunicorn):
    """Issue 25: stable_timeout + max_retries; before, it was UPDATED 2 s after TESTING."""
    server = device(start_gunicorn)
    before = pids(server)
    # a duration backoff policy would keep it recovering: during TESTING it rolls back anyway
    put_revision(server, "loop", lambda s: app_container(s, "loop", ["--exit-after", "0.5"], auto_recovery={
        "policy": "on-failure", "max_retries": 2, "retry_delay": 0.3, "stable_timeout": 10,
        "backoff_policy": "60s"}))
    progress = run(server, "LOCAL_RUN", "locals/loop")
    assert progress == [
        ("INPROGRESS", "Transitioning to new revision without rebooting"),
        ("TESTING", "Awaiting to see if update is stable"),
        ("TESTING", "Waiting for all containers to become stable"),
        ("ERROR", "A container could not be started"),
    ]
    assert get(server, "/_pvcore/health")["revision"] == "0"
    wait_until(lambda: statuses(server) == ALL_UP, timeout=10)
    after = pids(server)
    assert {name: after[name] for name in ALL_UP} == before  # a non-reboot rollback: nothing else restarted


def test_the_commit_waits_for_the_stability_window(start_gunicorn):
    server = device(start_gunicorn)
    put_revision(server, "steady", lambda s: app_container(s, "steady", [], auto_recovery={
        "policy": "on-failure", "max_retries": 2, "retry_delay": 0.3, "stable_timeout": 2.5}))
    progress = run(server, "LOCAL_RUN", "locals/steady")
    assert progress[-2:] == [("TESTING", "Waiting for all containers to become stable"),
                             ("UPDATED", "Update finished, revision not set as rollback point")]
    events = progress_events(server, "locals/steady")
    waited = _seconds(events[-1]["timestamp"]) - _seconds(events[1]["timestamp"])
    assert waited >= 2.0  # TESTING lasted the stability window, not the 0.3 s commit delay


def _seconds(stamp):
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# -- point 3: group timeouts ---------------------------------------------------------------


def test_a_group_timeout_longer_than_the_goals_timeout_is_waited(start_gunicorn):
    """A container READY after PV_UPDATER_GOALS_TIMEOUT, within its group's own timeout, is kept
    (issue 25: READY at 70 s in a group with timeout 100 was rolled back at 60 s)."""
    # (the setting is what cut every transition before; now it only stands in without pv_config)
    server = device(start_gunicorn, PV_UPDATER_GOALS_TIMEOUT="1", PVCORE_UPDATE_GOALS_TIMEOUT="1")

    def change(state):
        state["device.json"] = {"groups": groups(app_timeout=8)}
        app_container(state, "late", ["--ready", "--ready-after", "2.5"], status_goal="READY")

    put_revision(server, "late", change)
    progress = run(server, "LOCAL_RUN", "locals/late")
    assert progress[-1] == ("DONE", "Update finished, revision set as rollback point")
    assert get(server, "/_pvcore/health")["revision"] == "locals/late"


@pytest.mark.parametrize("where", ["group", "PV_UPDATER_GOALS_TIMEOUT"])
def test_a_goal_not_reached_rolls_back_at_its_own_timeout(start_gunicorn, where):
    """The group's timeout (or, for a group without one, PV_UPDATER_GOALS_TIMEOUT) cuts the
    update, not a global limit (issue 25: a group with timeout 30 rolled back at 60 s)."""
    server = device(start_gunicorn, PV_UPDATER_GOALS_TIMEOUT="2" if where != "group" else "120")

    def change(state):
        state["device.json"] = {"groups": groups(app_timeout=2 if where == "group" else None)}
        app_container(state, "never", [], status_goal="READY")

    put_revision(server, "never", change)
    progress = run(server, "LOCAL_RUN", "locals/never", timeout=20)
    assert progress[-1] == ("ERROR", "Status goal not reached")
    events = progress_events(server, "locals/never")
    took = _seconds(events[-1]["timestamp"]) - _seconds(events[0]["timestamp"])
    assert 2 <= took < 10
    assert get(server, "/_pvcore/health")["revision"] == "0"


# -- point 4: reboot and non-reboot transitions ----------------------------------------------


def test_non_reboot_transition_restarts_only_the_affected_container(start_gunicorn):
    """Issue 25: a change to a container-policy container restarted the system one too."""
    server = device(start_gunicorn)
    before = pids(server)

    def change(state):
        run_json = state[f"{SERVER}/run.json"]
        run_json["exec"] = run_json["exec"] + ["--exit-after", "100000"]

    put_revision(server, "app", change)
    progress = run(server, "LOCAL_RUN", "locals/app")
    assert held(progress) == [
        ("INPROGRESS", "Transitioning to new revision without rebooting"),
        ("TESTING", "Awaiting to see if update is stable"),
        ("UPDATED", "Update finished, revision not set as rollback point"),
    ]
    wait_until(lambda: statuses(server) == ALL_UP, timeout=10)
    after = pids(server)
    assert after[SERVER] != before[SERVER]
    assert (after[SDK], after[CLIENT]) == (before[SDK], before[CLIENT])


@pytest.mark.parametrize("change", ["system container", "bsp"])
def test_reboot_transition_on_the_demo_device_restarts_everything_and_ends_done(start_gunicorn, change):
    server = device(start_gunicorn)
    before = pids(server)

    def edit(state):
        if change == "bsp":
            state["bsp/run.json"] = dict(state["bsp/run.json"], initrd_config="x")
        else:
            run_json = state[f"{SDK}/run.json"]
            run_json["exec"] = run_json["exec"] + ["--exit-after", "100000"]

    put_revision(server, "sys", edit)
    progress = run(server, "LOCAL_RUN", "locals/sys")
    assert held(progress) == [
        ("INPROGRESS", "Rebooting"),
        ("INPROGRESS", "Trying new revision"),
        ("TESTING", "Awaiting to set rollback point if update is stable"),
        ("DONE", "Update finished, revision set as rollback point"),
    ]
    wait_until(lambda: statuses(server) == ALL_UP, timeout=10)
    after = pids(server)
    assert not set(after[name] for name in ALL_UP) & set(before.values())
    # committed: it is the revision the next boot runs
    server.stop()
    server.start()
    assert get(server, "/_pvcore/health")["revision"] == "locals/sys"
