"""Black-box: container status changes reach a watcher of ``/_pvcore/events``."""
import time

import pytest

from engine_server import all_ready, containers
from pvcore.testing import StreamReader, wait_until

pytestmark = pytest.mark.gunicorn

CLIENT = "pv-example-unix-client"


def chain(events, name):
    """The statuses ``name`` went through, checking each event starts where the last ended."""
    mine = [e for e in events if e["subject"] == name]
    for before, after in zip(mine, mine[1:]):
        assert after["data"]["old"] == before["data"]["new"], mine
        assert after["id"] > before["id"]
    return [mine[0]["data"]["old"]] + [e["data"]["new"] for e in mine]


def test_stop_and_start_by_api_publish_status_events_within_a_second_in_order(demo_server):
    wait_until(lambda: all_ready(demo_server), 20, message="examples READY")
    with StreamReader(demo_server.socket, "/_pvcore/events?types=container.status") as watcher:
        assert demo_server.request("PUT", f"/containers/{CLIENT}", b'{"action":"stop"}')[0] == 200
        stopped = watcher.events_until(lambda e: e["subject"] == CLIENT and e["data"]["new"] == "STOPPED", 10)
        arrived = time.time()
        assert arrived - stopped[-1]["time"] < 1.0
        assert containers(demo_server)[CLIENT]["status"] == "STOPPED"  # visible before published
        assert chain(stopped, CLIENT)[0] == "READY"

        assert demo_server.request("PUT", f"/containers/{CLIENT}", b'{"action":"start"}')[0] == 200
        started = watcher.events_until(lambda e: e["subject"] == CLIENT and e["data"]["new"] == "READY", 20)
        assert time.time() - started[-1]["time"] < 1.0
        path = chain(started, CLIENT)
        assert path[0] == "STOPPED" and path[-1] == "READY"
        assert path.index("STARTING") < path.index("STARTED") < path.index("READY")
        assert all(e["data"].get("rev") == "0" for e in stopped + started if e["subject"] == CLIENT)


def test_group_statuses_are_published(demo_server):
    wait_until(lambda: all_ready(demo_server), 20, message="examples READY")
    with StreamReader(demo_server.socket, "/_pvcore/events?since=0&types=group.status") as watcher:
        events = watcher.events_until(lambda e: e["subject"] == "app" and e["data"]["new"] == "READY", 5)
    app = [e["data"] for e in events if e["subject"] == "app"]
    assert app[0]["old"] is None and app[-1]["new"] == "READY"
    for before, after in zip(app, app[1:]):
        assert after["old"] == before["new"]
