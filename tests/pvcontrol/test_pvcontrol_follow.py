"""pvcontrol's following commands against a real gunicorn: events, logs, show-progress --follow."""
import json
import os
import select
import subprocess
import sys
import time

import pytest

from pvcore.testing import short_tempdir, wait_until, write_revision

pytestmark = pytest.mark.gunicorn

TALKER = r'''
import os, sys, time
print("line 0", flush=True)
n = 0
while True:
    if os.path.exists(sys.argv[1]):
        n += 1
        print("line %d" % n, flush=True)
        os.unlink(sys.argv[1])
    time.sleep(0.02)
'''


class Follower:
    """pvcontrol running in the background; its stdout read line by line."""

    def __init__(self, socket_path, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "pvcontrol", "-s", socket_path, *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._buf = b""

    def line(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no line from pvcontrol in time"
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, "pvcontrol ended: " + self.proc.stderr.read().decode()
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def test_events_prints_one_json_line_per_event_and_filters(start_gunicorn):
    server = start_gunicorn()
    follower = Follower(server.socket, "events", "--types", "wakelock.released")
    try:
        # The stream is open once the first write shows up.
        def seen():
            server.request("PUT", "/user-meta/x", str(time.monotonic()).encode())
            return json.loads(follower.line(1))
        event = wait_until(lambda: _quiet(seen), 15)
        assert event["type"] == "wakelock.released"
        assert set(event) == {"id", "time", "type", "subject", "data"}
    finally:
        follower.stop()


def _quiet(fn):
    try:
        return fn()
    except AssertionError:
        return None


def test_events_refused_when_full_exits_75(start_gunicorn):
    server = start_gunicorn(env={"PVCORE_MAX_WATCHERS": "0"})
    result = subprocess.run([sys.executable, "-m", "pvcontrol", "-s", server.socket, "events"],
                            capture_output=True, timeout=30)
    assert result.returncode == 75
    assert result.stderr == b'{"Error":"Too many watchers"}\n'


def test_logs_tail_and_follow(start_gunicorn):
    base = short_tempdir()
    poke = os.path.join(base, "poke")
    run = {"#spec": "service-manifest-run@1", "name": "talker", "type": "lxc", "group": "app",
           "status_goal": "STARTED", "restart_policy": "container", "exec": ["{python}", "-c", TALKER, poke]}
    write_revision(os.path.join(base, "storage"), {"#spec": "pantavisor-service-system@1", "talker/run.json": run})
    server = start_gunicorn(base=base)
    log = os.path.join(base, "storage", "logs", "0", "talker", "console.log")
    wait_until(lambda: os.path.exists(log) and os.path.getsize(log) > 0, 20)

    def say():
        open(poke, "w").close()
        wait_until(lambda: not os.path.exists(poke), 10)

    say()
    result = subprocess.run([sys.executable, "-m", "pvcontrol", "-s", server.socket, "logs", "talker", "-n", "1"],
                            capture_output=True, timeout=30)
    assert (result.returncode, result.stdout) == (0, b"line 1\n")

    follower = Follower(server.socket, "logs", "-f", "talker", "-n", "1")
    try:
        assert follower.line() == b"line 1"
        say()
        assert follower.line() == b"line 2"
    finally:
        follower.stop()


DEMO_SERVER = "pv-example-unix-server"
#: upstream's default groups, but a 1 s stable_timeout for the app group (upstream's is 30 s)
QUICK_GROUPS = os.path.join(os.path.dirname(__file__), "..", "plugins", "pv_steps", "groups_quick.json")
UPDATE_ENV = {"PVCORE_UPDATE_COMMIT_DELAY": "0.3", "PVCORE_DEFAULT_GROUPS_FILE": QUICK_GROUPS}


def _get(server, path):
    status, _, body = server.request("GET", path)
    assert status == 200, (path, body)
    return json.loads(body)


def _put_revision(server, name, change):
    state = _get(server, "/steps/0")
    change(state)
    status, _, body = server.request("PUT", f"/steps/locals/{name}", json.dumps(state))
    assert status == 200, body


def _follow_local_run(server, rev):
    follower = subprocess.Popen([sys.executable, "-m", "pvcontrol", "-s", server.socket,
                                 "steps", "show-progress", "--follow", rev],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # It has printed the first snapshot once it watches.
    first = follower.stdout.readline()
    assert json.loads(first)["status"] == "NEW"
    status, _, body = server.request("POST", "/commands", json.dumps({"op": "LOCAL_RUN", "payload": rev}))
    assert status == 200, body
    out, err = follower.communicate(timeout=60)
    return follower.returncode, [json.loads(line) for line in out.splitlines()], err


def test_show_progress_follow_exits_with_the_outcome(start_gunicorn):
    server = start_gunicorn(demo=True, env=UPDATE_ENV)
    wait_until(lambda: server.request("GET", "/containers")[0] == 200, 20)

    def changed(state):
        run = state[f"{DEMO_SERVER}/run.json"]
        run["exec"] = run["exec"] + ["--exit-after", "100000"]

    _put_revision(server, "good", changed)
    code, seen, err = _follow_local_run(server, "locals/good")
    assert code == 0, err
    statuses = [p["status"] for p in seen]
    assert statuses[-1] == "UPDATED"
    assert "INPROGRESS" in statuses and "TESTING" in statuses

    def broken(state):
        run = dict(state[f"{DEMO_SERVER}/run.json"], name="broken", status_goal="READY",
                   auto_recovery={"policy": "no"})
        run["exec"] = run["exec"][:3] + ["--exit-after", "0"]
        run.pop("restart_policy", None)
        for key in ("lxc.container.conf", "root.squashfs"):
            state[f"broken/{key}"] = state[f"{DEMO_SERVER}/{key}"]
        state["broken/run.json"] = run

    _put_revision(server, "broken", broken)
    code, seen, err = _follow_local_run(server, "locals/broken")
    assert code == 2, err
    assert seen[-1]["status"] == "ERROR"
