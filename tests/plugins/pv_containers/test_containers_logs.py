"""Black-box: ``GET /_pvcore/logs/{name}`` on a real gunicorn and a real container."""
import os

import pytest

from pvcore.testing import StreamReader, short_tempdir, wait_until, write_revision

pytestmark = pytest.mark.gunicorn

# Prints a numbered line whenever the file named by argv[1] appears (then removes it).
TALKER = r'''
import os, sys, time
print("hello 0", flush=True)
n = 0
while True:
    if os.path.exists(sys.argv[1]):
        n += 1
        print("hello %d" % n, flush=True)
        os.unlink(sys.argv[1])
    time.sleep(0.02)
'''


@pytest.fixture
def talker(start_gunicorn, device_env):
    base = short_tempdir()
    poke = os.path.join(base, "poke")
    run = {"#spec": "service-manifest-run@1", "name": "talker", "type": "lxc", "group": "app",
           "status_goal": "STARTED", "restart_policy": "container", "exec": ["{python}", "-c", TALKER, poke]}
    write_revision(os.path.join(base, "storage"), {"#spec": "pantavisor-service-system@1", "talker/run.json": run})
    server = start_gunicorn(env=device_env, base=base)
    log = os.path.join(base, "storage", "logs", "0", "talker", "console.log")
    wait_until(lambda: os.path.exists(log) and os.path.getsize(log) > 0, 20, message="the container's first line")

    def say():
        open(poke, "w").close()
        wait_until(lambda: not os.path.exists(poke), 10)

    return server, say


def test_tail_and_follow_see_new_console_lines(talker):
    server, say = talker
    say()
    say()
    status, headers, body = server.request("GET", "/_pvcore/logs/talker?tail=2")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert body == b"hello 1\nhello 2\n"
    assert server.request("GET", "/_pvcore/logs/talker")[2] == b"hello 0\nhello 1\nhello 2\n"

    with StreamReader(server.socket, "/_pvcore/logs/talker?tail=1&follow=1") as follower:
        assert follower.status == 200
        assert follower.line(5) == b"hello 2"
        say()
        assert follower.line(5) == b"hello 3"
        say()
        assert follower.line(5) == b"hello 4"


def test_unknown_container_and_bad_queries(talker):
    server, _ = talker
    assert server.request("GET", "/_pvcore/logs/nope")[::2] == (404, b'{"Error":"Container not found"}')
    for bad in ("x", "%C2%B2", "-1", "+1", "1e3", "100001", "9" * 40, "1&tail=2"):  # %C2%B2: "²"
        assert server.request("GET", "/_pvcore/logs/talker?tail=" + bad)[::2] == (400, b'{"Error":"Invalid tail"}'), bad
    assert server.request("GET", "/_pvcore/logs/talker?follow=maybe")[::2] == (400, b'{"Error":"Invalid follow"}')
