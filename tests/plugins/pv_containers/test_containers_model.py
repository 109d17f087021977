"""Parsing a state into groups and containers (docs/protocol.md §D2.2, §D4.4, §D5)."""
import pytest

from engine_fakes import run_json, state_of
from pv_containers.model import Status, parse_backoff, parse_state, render_backoff


def groups_of(state):
    rev = parse_state("0", state)
    return {name: c.group.name for name, c in rev.containers.items()}


def test_status_order():
    order = ["NONE", "INSTALLED", "MOUNTED", "BLOCKED", "STARTING", "STARTED", "READY", "RECOVERING",
             "STOPPING", "STOPPED"]
    assert sorted(Status, key=int) == [Status[name] for name in order]


def test_default_groups_and_unassigned_members():
    rev = parse_state("0", state_of(run_json("a"), run_json("b"), run_json("c", group="app")))
    assert [(g.name, g.status_goal, g.restart_policy, g.timeout) for g in rev.groups] == [
        ("data", "MOUNTED", "system", 30), ("root", "STARTED", "system", 30),
        ("platform", "STARTED", "system", 30), ("app", "STARTED", "container", 30)]
    assert rev.groups[3].recovery.retry_delay == 5 and rev.groups[3].recovery.backoff_factor == 2
    # first unassigned goes to root, the others to platform
    assert groups_of(state_of(run_json("a"), run_json("b"), run_json("c", group="app"))) == {
        "a": "root", "b": "platform", "c": "app"}
    assert groups_of(state_of(run_json("a"), run_json("r", group="root"))) == {"a": "platform", "r": "root"}
    assert groups_of(state_of(run_json("a", runlevel="data"))) == {"a": "data"}


def test_custom_groups_put_unassigned_in_the_last():
    groups = [{"name": "base", "status_goal": "READY", "restart_policy": "system", "timeout": 7},
              {"name": "apps"}]
    rev = parse_state("0", state_of(run_json("x"), run_json("y", group="base"), groups=groups))
    assert {n: c.group.name for n, c in rev.containers.items()} == {"x": "apps", "y": "base"}
    y = rev.containers["y"]
    assert (y.status_goal, y.restart_policy, y.group.timeout) == ("READY", "system", 7)
    x = rev.containers["x"]
    assert (x.status_goal, x.restart_policy, x.group.timeout) == ("STARTED", "container", 120)


def test_legacy_groups_json():
    state = state_of(run_json("x"))
    state["groups.json"] = [{"name": "only"}]
    assert groups_of(state) == {"x": "only"}


def test_roles_goal_policy_from_run_json():
    rev = parse_state("0", state_of(
        run_json("plain"), run_json("none", roles=[]), run_json("nobody", roles=["nobody"]),
        run_json("admin", roles=["mgmt"], status_goal="READY", restart_policy="container", group="platform")))
    c = rev.containers
    assert c["plain"].roles == ("mgmt",)
    assert c["none"].roles == () and c["nobody"].roles == ()
    assert (c["admin"].roles, c["admin"].status_goal, c["admin"].restart_policy) == (("mgmt",), "READY", "container")


def test_state_order_and_bsp_ignored():
    state = state_of(run_json("b"), run_json("a"))
    state["bsp/run.json"] = {"linux": "kernel.img"}
    assert list(parse_state("0", state).containers) == ["b", "a"]


def test_digest_covers_owned_keys():
    one = state_of(run_json("a"))
    two = dict(one, **{"a/root.squashfs": "ab" * 32})
    three = dict(one, **{"_config/a/etc/x": "cd" * 32})
    digests = {parse_state("0", s).containers["a"].digest for s in (one, two, three)}
    assert len(digests) == 3


@pytest.mark.parametrize("text,seconds,rendered", [
    ("reboot", "reboot", "reboot"), ("never", "never", "never"), ("30s", 30, "30s"), ("10min", 600, "10min"),
    ("1h", 3600, "1h"), ("90", 90, "90s"), (7200, 7200, "2h"), ("120s", 120, "2min"), ("3601s", 3601, "3601s"),
])
def test_backoff_policy_parse_and_render(text, seconds, rendered):
    assert parse_backoff(text) == seconds
    assert render_backoff(parse_backoff(text)) == rendered


def test_bad_backoff_policy_falls_back_to_reboot():
    assert parse_backoff("soon") == "reboot"
