"""Black-box: a failed update's progress ``logs`` name what failed — the container and
its exit status or start error, the container that missed its goal, the missing object —
as upstream's do (issue 30; docs/protocol.md §D3.2, "Progress logs")."""
import hashlib
import json

import pytest

from test_steps_updates_gunicorn import app_container, device, get, groups, put_revision, run

pytestmark = pytest.mark.gunicorn


def logs(server, rev):
    lines = get(server, f"/steps/{rev}/progress")["logs"].splitlines()
    return [json.loads(line)["msg"] for line in lines]


def test_a_container_that_dies_is_named_with_its_exit_status(start_gunicorn):
    server = device(start_gunicorn)
    put_revision(server, "dies", lambda s: app_container(s, "dies", ["--exit-after", "0.3", "--exit-code", "3"],
                                                         auto_recovery={"policy": "on-failure", "max_retries": 1,
                                                                        "retry_delay": 0.2, "stable_timeout": 30}))
    assert run(server, "LOCAL_RUN", "locals/dies")[-1] == ("ERROR", "A container could not be started")
    assert logs(server, "locals/dies") == [
        "A container could not be started: container dies: exited with status 3, 1 retries used"]


def test_a_container_that_cannot_start_is_named_with_the_runtimes_error(start_gunicorn):
    server = device(start_gunicorn)

    def change(state):
        app_container(state, "nostart", [])
        state["nostart/run.json"]["exec"] = ["/nonexistent/init"]

    put_revision(server, "nostart", change)
    assert run(server, "LOCAL_RUN", "locals/nostart")[-1] == ("ERROR", "A container could not be started")
    (line,) = logs(server, "locals/nostart")
    assert line.startswith("A container could not be started: container nostart: could not start: ")
    assert "/nonexistent/init" in line


def test_a_missed_goal_names_the_container(start_gunicorn):
    server = device(start_gunicorn)

    def change(state):
        state["device.json"] = {"groups": groups(app_timeout=1)}
        app_container(state, "never", [], status_goal="READY")

    put_revision(server, "never", change)
    assert run(server, "LOCAL_RUN", "locals/never", timeout=20)[-1] == ("ERROR", "Status goal not reached")
    (line,) = logs(server, "locals/never")
    assert line.startswith("Status goal not reached: container never (group app) is STARTED, its goal READY")


def test_a_missing_object_is_named_by_its_key(start_gunicorn):
    server = device(start_gunicorn)
    sha = hashlib.sha256(b"never uploaded").hexdigest()

    def change(state):
        app_container(state, "lacking", [])
        state["lacking/root.squashfs"] = sha

    put_revision(server, "lacking", change)
    assert run(server, "LOCAL_RUN", "locals/lacking")[-1] == ("ERROR", "Object validation went wrong")
    assert logs(server, "locals/lacking") == [f"1 objects missing: lacking/root.squashfs ({sha})"]
