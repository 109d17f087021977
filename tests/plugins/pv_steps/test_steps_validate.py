"""State JSON validation (docs/protocol.md §D2.4) and revision names."""
import json

import pytest

from pv_steps.names import normalize, valid_local_name
from pv_steps.validate import check_state, parse_state
from pvcore_demo import demo_state

SPEC = "pantavisor-service-system@1"
RUN = {"#spec": "service-manifest-run@1", "name": "c", "group": "app",
       "status_goal": "READY", "restart_policy": "container"}


def state(**extra):
    doc = {"#spec": SPEC}
    doc.update(extra)
    return doc


@pytest.mark.parametrize("doc", [
    state(),
    demo_state()[0],
    state(**{"c/run.json": RUN, "c/root.squashfs": "a" * 64}),
    state(**{"c/run.json": {"name": "c"}}),
    state(**{"c/run.json": dict(RUN, group="mine"), "device.json": {"groups": [{"name": "mine"}]}}),
    state(**{"c/run.json": dict(RUN, group="g"), "groups.json": [{"name": "g", "timeout": 5}]}),
    state(**{"c/run.json": dict(RUN, group=None, runlevel="root")}),
    state(**{"bsp/drivers.json": {"#spec": "driver-aliases@1", "all": {}}}),
    state(**{"bsp/run.json": {"addons": []}}),  # appengine needs no kernel
    state(**{"_sigs/c.json": {"#spec": "pvs@2"}}),
])
def test_valid_states(doc):
    assert check_state(doc, "appengine") is None


@pytest.mark.parametrize("doc", [
    {},
    {"#spec": "something-else@1"},
    {"#spec": "pantavisor-multi-platform@1"},
    state(**{"c/run.json": dict(RUN, name=None)}),
    state(**{"c/run.json": {"group": "app"}}),
    state(**{"c/run.json": dict(RUN, status_goal="RUNNING")}),
    state(**{"c/run.json": dict(RUN, restart_policy="always")}),
    state(**{"c/run.json": dict(RUN, group="nope")}),
    state(**{"c/run.json": "not an object"}),
    state(**{"c/run.json": dict(RUN, group="app"), "device.json": {"groups": [{"name": "mine"}]}}),
    state(**{"device.json": {"groups": []}}),
    state(**{"device.json": {"groups": [{"description": "no name"}]}}),
    state(**{"device.json": {"groups": [{"name": "g", "status_goal": "UP"}]}}),
    state(**{"device.json": {"groups": [{"name": "g", "restart_policy": "never"}]}}),
    state(**{"device.json": {"groups": [{"name": "g", "timeout": -1}]}}),
    state(**{"device.json": {"groups": [{"name": "g", "timeout": "10"}]}}),
    state(**{"device.json": []}),
    state(**{"groups.json": {"name": "g"}}),
    state(**{"bsp/drivers.json": ["not", "an", "object"]}),
    state(**{"bsp/run.json": "x"}),
    state(**{"../escape": "a" * 64}),
    state(**{"/abs/path": "a" * 64}),
    state(**{"c//x": "a" * 64}),
    state(**{"c/run.json": dict(RUN, name="other")}),  # one container, one name
])
def test_invalid_states(doc):
    assert check_state(doc, "appengine") is not None


def test_multi_platform_spec_is_allowed_outside_appengine():
    assert check_state({"#spec": "pantavisor-multi-platform@1"}, "embedded") is None


def test_bsp_needs_a_kernel_outside_appengine():
    assert check_state(state(**{"bsp/run.json": {"addons": []}}), "embedded") is not None
    assert check_state(state(**{"bsp/run.json": {"linux": "k", "initrd": "i"}}), "embedded") is None
    assert check_state(state(**{"bsp/run.json": {"fit": "f"}}), "standalone") is None


@pytest.mark.parametrize("data", [
    b"", b"[]", b"\x1f\x8b\x08\x00\x00", b'{"#spec": NaN}', b'{"a": 1, "a": 2}', b"\xff\xfe{}",
    b"[" * 100000 + b"]" * 100000,
])
def test_parse_rejects_what_is_not_a_strict_json_object(data):
    assert parse_state(data) is None


def test_parse_accepts_an_object():
    assert parse_state(json.dumps(state()).encode()) == state()


@pytest.mark.parametrize("name,ok", [
    ("x", True), ("x" * 64, True), ("x" * 65, False), ("", False), (".", False), ("..", False),
    ("a/b", False), ("a\0b", False), ("a\nb", False), ("a.tmp", False), (".hidden", True), ('qu"ote', True),
])
def test_local_names(name, ok):
    assert valid_local_name(name) is ok


@pytest.mark.parametrize("rev,expected", [
    ("0", "0"), ("12", "12"), ("current", "current"), ("locals/x", "locals/x"), ("locals", None),
    ("..", None), ("", None), ("locals/..", None), ("locals/a/b", None), ("a/b", None), ("/etc", None),
    ("x" * 256, None), (None, None),
])
def test_revision_names(rev, expected):
    assert normalize(rev) == expected
