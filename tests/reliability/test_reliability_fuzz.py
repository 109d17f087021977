"""Hostile input, in process: every name-bearing path segment and every JSON body.

All installed plugins (entry points) on a fresh core, no services started
(revision state, metadata, objects and steps work without them). Every answer
must be a documented status with a compact ``{"Error": ...}`` body, never an
``unhandled_error``; nothing may be written outside the storage and run dirs
(a canary dir beside them stays empty); the next normal request is served.
"""
import json
import os
import shutil

import pytest
from hypothesis import given, strategies as st

import pv_containers
from pvcore import hookimpl
from pvcore_demo import seed
from reliability_helpers import HYPOTHESIS, assert_documented, files_under

MARK = "pvfuzzmark"
#: A pretend process inside the demo's non-mgmt container (for /signal bodies).
CONTAINER_PID = 4_000_001


class InsideContainer:
    """Identifies :data:`CONTAINER_PID` as ``pv-example-unix-client`` (roles ``[]`` in the demo)."""

    @hookimpl(tryfirst=True)
    def pvcore_identify_caller(self, core, pid):
        return "pv-example-unix-client" if pid == CONTAINER_PID else None

#: Every route whose path carries a name, with the methods it serves.
NAMED_ROUTES = [
    ("GET", "/objects/{}"), ("PUT", "/objects/{}"),
    ("GET", "/steps/{}"), ("GET", "/steps/{}/progress"), ("PUT", "/steps/{}/commitmsg"),
    ("GET", "/steps/locals/{}"), ("PUT", "/steps/locals/{}"),
    ("GET", "/steps/locals/{}/progress"), ("PUT", "/steps/locals/{}/commitmsg"),
    ("PUT", "/user-meta/{}"), ("DELETE", "/user-meta/{}"),
    ("PUT", "/device-meta/{}"), ("DELETE", "/device-meta/{}"),
    ("PUT", "/containers/{}"), ("PUT", "/daemons/{}"),
    ("PUT", "/drivers/{}/load"), ("PUT", "/drivers/{}/unload"),
]

HOSTILE_SEGMENTS = [
    "", ".", "..", "...", "%2e%2e", "%2E%2E", ".%2e", "%2e", "..%2f..%2f" + MARK, "..%2F" + MARK,
    "%2f", "a%2fb", "%2f..%2f..%2ftmp%2f" + MARK, "%00", "a%00b", "%ff%fe", "%c0%ae%c0%ae", "%",
    "%zz", "%%", "locals", "current", ".tmp", MARK + ".tmp", "." + MARK + ".tmp", "a" * 64, "A" * 64,
    "0" * 63, "f" * 65, "x" * 256, "x" * 4096, "x" * 70000, "é" * 40, "\u202e", "%e2%80%ae", " ", "%20",
    "~", "$HOME", "${user-meta:x}", "con", "nul", "*", "%0a", "%0d%0a", "%09",
]


def quote_segment(raw: bytes) -> str:
    """Percent-encode whatever a request line cannot carry (and ``/ ? #``)."""
    out = []
    for byte in raw:
        ch = chr(byte)
        if 0x21 <= byte < 0x7F and ch not in "/?#%":
            out.append(ch)
        else:
            out.append("%%%02X" % byte)
    return "".join(out)


segments = st.one_of(
    st.sampled_from(HOSTILE_SEGMENTS),
    st.text(min_size=0, max_size=80).map(lambda t: quote_segment(t.encode("utf-8", "surrogatepass"))),
    st.binary(min_size=0, max_size=80).map(quote_segment),
    st.builds(lambda a, b: a + b, st.sampled_from(["..", "%2e%2e", "locals%2f", "%2f"]),
              st.text(alphabet="./%2efAx0", max_size=30)),
)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)


def _dup_keys(pairs):
    return ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}").encode()


def bodies(keys):
    """JSON bodies aimed at an endpoint expecting ``keys``: valid, wrong types, duplicates, truncated, bytes."""
    known = st.sampled_from(keys)
    shaped = st.dictionaries(st.one_of(known, st.text(max_size=8)), json_values, max_size=5)
    return st.one_of(
        shaped.map(lambda d: json.dumps(d).encode()),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.lists(st.tuples(known, json_values), min_size=2, max_size=4).map(_dup_keys),
        st.tuples(shaped.map(lambda d: json.dumps(d).encode()), st.integers(0, 60)).map(lambda t: t[0][:t[1]]),
        st.binary(max_size=300),
        st.sampled_from([b"", b"{", b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000, b"\xff\xfe{}", b"NaN",
                         b'{"action":NaN}', b'{"action":"start"}\x00', b'\x00{"type":"ready"}',
                         b'{"action":"' + b"r" * 2000 + b'"}', b" " * 5000, b'{"op":"RUN_GC","payload":1e999}']),
    )


STATE_KEYS = ["#spec", "bsp/run.json", "x/run.json", "../run.json", "device.json", "groups", "disks.json"]
BODY_TARGETS = [
    ("PUT", "/containers/pv-example-unix-client", ["action"]),
    ("PUT", "/containers/pvr-sdk", ["action"]),
    ("PUT", "/daemons/pv-xconnect", ["action"]),
    ("POST", "/signal", ["type", "payload"]),
    ("POST", "/commands", ["op", "payload"]),
    ("PUT", "/steps/locals/fuzz", STATE_KEYS),
    ("PUT", "/steps/locals/fuzz/commitmsg", ["msg"]),
    ("PUT", "/user-meta/fuzz", ["v"]),
    ("PUT", "/device-meta/fuzz", ["v"]),
    ("PUT", "/objects/" + "0" * 64, ["x"]),
    ("POST", "/storage/gc", ["x"]),
    ("PUT", "/drivers/load", ["x"]),
]


@pytest.fixture(name="fuzz_device")
def _fuzz_device(make_core, make_client, log_output):
    """The demo revision on disk, every plugin loaded, no service running; plus a canary dir."""
    core = make_core(load_entrypoints=True)
    base = os.path.dirname(core.settings.storage_dir)
    canary = os.path.join(base, "canary")
    os.makedirs(canary)
    seed(core)
    # the steps plugin read trails/ at startup: rebuild the core over the seeded storage
    core = make_core(load_entrypoints=True, plugins=[InsideContainer()], overrides={
        "storage_dir": core.settings.storage_dir, "run_dir": core.settings.run_dir})
    # the engine parses the running revision; no service starts, so no container runs
    assert core.stash[pv_containers.ENGINE].loaded
    client = make_client(core)
    client.container = make_client(core, pid=CONTAINER_PID)
    outside_before = files_under(base, skip=(core.settings.storage_dir, core.settings.run_dir))
    yield client, log_output
    unhandled = [e for e in log_output if e.get("event") == "unhandled_error"]
    assert unhandled == [], unhandled[:3]
    assert os.listdir(canary) == [], "a file was written next to the storage dir"
    after = files_under(base, skip=(core.settings.storage_dir, core.settings.run_dir))
    assert after == outside_before, after - outside_before
    strays = [n for n in os.listdir("/tmp") if MARK in n] + [n for n in os.listdir(base) if MARK in n]
    assert strays == []
    shutil.rmtree(canary, ignore_errors=True)


def _check(client, method, path, body=b"", where="", sender=None):
    result = (sender or client).simulate_request(method, path, body=body)
    assert_documented(result.status_code, result.content, f"{where} {method} {path[:120]}")
    if result.status_code != 200 or method == "PUT":
        assert result.headers.get("content-type", "").startswith("application/json") or result.status_code == 200
    follow = client.simulate_get("/user-meta")
    assert follow.status_code == 200
    return result


@given(segment=segments, route=st.sampled_from(NAMED_ROUTES), body=st.binary(max_size=64))
def test_hostile_path_segments(fuzz_device, segment, route, body):
    client, _ = fuzz_device
    method, template = route
    _check(client, method, template.format(segment), body if method == "PUT" else b"", "segment")


test_hostile_path_segments = HYPOTHESIS(test_hostile_path_segments)


@pytest.mark.parametrize("method,path,keys", BODY_TARGETS, ids=[t[1] for t in BODY_TARGETS])
def test_hostile_json_bodies(fuzz_device, method, path, keys):
    client, _ = fuzz_device

    @HYPOTHESIS
    @given(body=bodies(keys))
    def run(body):
        _check(client, method, path, body, "body", sender=client.container if path == "/signal" else None)

    run()


def test_segments_listed_all_reach_their_route(fuzz_device):
    """The hostile list itself, every route, exhaustively (the examples above sample it)."""
    client, _ = fuzz_device
    for method, template in NAMED_ROUTES:
        for segment in HOSTILE_SEGMENTS:
            _check(client, method, template.format(segment), b"v" if method == "PUT" else b"", "listed")
