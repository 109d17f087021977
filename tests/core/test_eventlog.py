"""The event ring buffer and ``GET /_pvcore/events`` without a real server.

Falcon's test client cannot hand a connection over, so the endpoint answers
what the buffer holds and ends: enough to check replay, gaps and filters.
"""
import json

from pvcore import hookimpl
from pvcore.eventlog import EventLog, type_matcher
from pvcore.events import EventCounter
from pvcore.ownership import Owns


class Publisher:
    """Owns the event types these tests publish (an undeclared type is refused)."""

    @hookimpl
    def pvcore_declare_ownership(self):
        return Owns(events={"demo.*": "test events", "test.*": "test events"})


def lines(body: bytes) -> list:
    return [json.loads(line) for line in body.splitlines()]


def test_ids_start_after_any_earlier_workers():
    earlier = EventCounter()
    later = EventCounter()
    assert later.first >= earlier.first
    assert earlier.make("x", "y", {}).id == earlier.first


def test_the_buffer_overruns_into_one_gap_record():
    counter = EventCounter(first=100)
    log = EventLog(4, counter.first)
    for n in range(10):
        log.append(counter.make("t", str(n), {}))
    data, cursor = log.read(99, type_matcher([]), 1 << 16)
    records = lines(data)
    assert records[0]["type"] == "pvcore.gap"
    assert records[0]["data"] == {"since": 99, "next": 106}
    assert records[0]["id"] == 105
    assert [r["id"] for r in records[1:]] == [106, 107, 108, 109]
    assert cursor == 109
    assert log.read(cursor, type_matcher([]), 1 << 16) == (b"", 109)


def test_a_cursor_unknown_to_this_worker_is_a_gap_too():
    log = EventLog(4, 100)
    data, cursor = log.read(5000, type_matcher([]), 1 << 16)
    assert lines(data)[0]["type"] == "pvcore.gap"
    assert cursor == 99


def test_types_match_whole_types_and_dotted_prefixes():
    match = type_matcher(["container", "meta.user"])
    assert match("container.status") and match("meta.user")
    assert not match("containers.x") and not match("meta.device")


def test_endpoint_replays_since_and_filters(make_core, make_client):
    core = make_core(plugins=[Publisher()])
    client = make_client(core)
    first = core.publish("demo.one", "a", {"n": 1})
    core.publish("demo.two", "b", {"n": 2})
    core.publish("demo.one", "c", {"n": 3})

    resp = client.simulate_get("/_pvcore/events", params={"since": "0"})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    assert [e["subject"] for e in lines(resp.content)] == ["a", "b", "c"]

    resp = client.simulate_get("/_pvcore/events", params={"since": str(first.id), "types": "demo.one"})
    assert [(e["type"], e["subject"], e["data"]) for e in lines(resp.content)] == [("demo.one", "c", {"n": 3})]


def test_endpoint_refuses_bad_queries(make_core, make_client):
    client = make_client(make_core())
    for params in ({"since": "-1"}, {"since": "abc"}, {"types": "a b"}):
        resp = client.simulate_get("/_pvcore/events", params=params)
        assert resp.status_code == 400
        assert set(resp.json) == {"Error"}


def test_only_mgmt_callers_may_watch(make_core, make_client):
    from pvcore.testing import ContainerCaller

    client = make_client(make_core(plugins=[ContainerCaller("app", roles=[])]))
    resp = client.simulate_get("/_pvcore/events")
    assert resp.status_code == 403
    assert resp.json == {"Error": "Request not sent from a mgmt platform"}


def test_an_oversized_event_keeps_its_place_but_not_its_data():
    counter = EventCounter(first=1)
    log = EventLog(4, 1)
    log.append(counter.make("big", "s", {"blob": "x" * 100_000}))
    (record,) = lines(log.read(0, type_matcher([]), 1 << 16)[0])
    assert record["type"] == "big" and record["data"]["truncated"] is True


def test_publish_returns_once_every_listener_has_seen_the_event(make_core):
    """A PUT answered after its publish: readers see what listeners made of it."""
    import threading
    import time

    from pvcore import hookimpl

    seen, started, gate = [], threading.Event(), threading.Event()

    class Slow:
        @hookimpl
        def pvcore_event(self, core, event):
            if event.type == "test.slow":
                started.set()
                gate.wait(5)
            seen.append(event.type)

    core = make_core(plugins=[Slow(), Publisher()])
    first = threading.Thread(target=core.publish, args=("test.slow", "a"))
    first.start()
    assert started.wait(5)
    returned = []
    second = threading.Thread(target=lambda: (core.publish("test.fast", "b"), returned.append(list(seen))))
    second.start()
    time.sleep(0.2)
    assert returned == []  # still being delivered by the first thread
    gate.set()
    second.join(5)
    first.join(5)
    assert returned == [["test.slow", "test.fast"]]
