"""The one revision model: a state into groups and containers (docs/protocol.md §D2.2, §D4.4, §D5)."""
import pytest

from pv_steps.model import build, parse_backoff

from engine_fakes import SPEC, run_json, state_of

def parse_state(rev, state):
    return build(rev, state)


def groups_of(state):
    rev = parse_state("0", state)
    return {name: c.group for name, c in rev.containers.items()}


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
    assert {n: c.group for n, c in rev.containers.items()} == {"x": "apps", "y": "base"}
    y = rev.containers["y"]
    assert (y.status_goal, y.restart_policy, rev.group(y.group).timeout) == ("READY", "system", 7)
    x = rev.containers["x"]
    assert (x.status_goal, x.restart_policy, rev.group(x.group).timeout) == ("STARTED", "container", None)


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
def test_backoff_policy_parse(text, seconds, rendered):
    assert parse_backoff(text) == seconds


def test_bad_backoff_policy_falls_back_to_reboot():
    assert parse_backoff("soon") == "reboot"


def test_model_is_immutable_and_holds_what_consumers_read():
    sha, conf = "ab" * 32, "cd" * 32
    state = state_of(run_json("a", config="lxc.container.conf", drivers={"required": ["wifi"], "manual": ["cam"]},
                              services={"required": [{"name": "bus", "role": "client"}], "optional": "x, y"},
                              exec=["/bin/true"]))
    state.update({"a/root.squashfs": sha, "a/lxc.container.conf": conf, "a/services.json": {"services": [
        {"name": "api", "type": "rest"}, {"owns": "x"}]}, "bsp/drivers.json": {
        "all": {"wifi": ["brcmfmac"], "cam": ["uvc a=1"]}, "fitconfig:b": {"wifi": ["other"]}}})
    rev = parse_state("locals/x", state)
    a = rev.containers["a"]
    assert (a.name, a.folder, a.config) == ("a", "a", "lxc.container.conf")
    assert dict(a.objects) == {"root.squashfs": sha, "lxc.container.conf": conf}
    assert dict(rev.objects) == {"a/root.squashfs": sha, "a/lxc.container.conf": conf}
    assert rev.shas() == tuple(sorted((sha, conf)))
    assert a.drivers == (("wifi", "REQUIRED"), ("cam", "MANUAL"))
    assert [e["name"] for e in a.exports] == ["api"]
    assert [r["name"] for r in a.requirements] == ["bus", "x", "y"]
    assert rev.driver_aliases() == {"wifi": ("brcmfmac",), "cam": ("uvc a=1",)}
    assert rev.driver_aliases("b")["wifi"] == ("other",)
    assert a.run["exec"] == ("/bin/true",)
    with pytest.raises(TypeError):
        a.run["exec"] = ["x"]
    with pytest.raises(Exception):
        a.name = "b"
    with pytest.raises(TypeError):
        rev.containers["b"] = a
    # the caller's dict is not shared with the model
    state["a/run.json"]["exec"].append("more")
    assert a.run["exec"] == ("/bin/true",)


def test_cache_builds_once_per_state_file(tmp_path):
    import json
    import os

    from pv_steps.model import RevisionCache

    path = tmp_path / "json"
    loads = []

    def load(rev):
        loads.append(rev)
        return json.loads(path.read_text())

    cache = RevisionCache(lambda r: "locals/x" if r in ("current", "locals/x") else None,
                          lambda r: str(path), load, size=2)
    path.write_text(json.dumps(state_of(run_json("a"))))
    first = cache.get("locals/x")
    assert cache.get("current") is first and loads == ["locals/x"]
    # a rewrite (a new file renamed into place) is a new model
    tmp = tmp_path / "new"
    tmp.write_text(json.dumps(state_of(run_json("b"))))
    os.replace(tmp, path)
    second = cache.get("locals/x")
    assert list(second.containers) == ["b"] and len(loads) == 2
    assert cache.get("nope") is None
    path.unlink()
    assert cache.get("locals/x") is None


def test_bsp_aliases_merge_and_ignore_bad_shapes():
    state = {"#spec": SPEC, "bsp/drivers.json": {"all": {"a": ["x"], "bad": "y", "b": ["z"]},
                                                 "fitconfig:f1": {"b": ["w"]}, "fitconfig:f2": {"c": ["v"]}}}
    assert build("0", state).driver_aliases() == {"a": ("x",), "b": ("z",)}
    assert build("0", state).driver_aliases("f1") == {"a": ("x",), "b": ("w",)}
    assert build("0", {"bsp/drivers.json": "nope"}).driver_aliases() == {}
    assert build("0", {}).driver_aliases() == {}


def test_driver_references_in_type_order_and_robust():
    run = {"drivers": {"manual": ["m"], "required": ["r", 3], "optional": "notalist"}}
    assert build("0", state_of(run_json("c", **run))).containers["c"].drivers == (("r", "REQUIRED"), ("m", "MANUAL"))
    assert build("0", state_of(run_json("c", drivers=[]))).containers["c"].drivers == ()
    assert build("0", state_of(run_json("c"))).containers["c"].drivers == ()


def test_config_overlay_files_by_path():
    sha = "a" * 64
    state = state_of(run_json("app"), run_json("other"))
    state.update({
        "_config/app/etc/app.conf": sha,
        "_config/app/etc/settings.json": {"level": 3},  # pvr inlines JSON files
        "_config/app/etc/../../escape": sha,  # (PUT /steps refuses it; a seed might hold it)
        "_config/app/etc/not-an-object": "hello",
        "_config/other/x": sha,
    })
    app = build("0", state).containers["app"]
    assert dict(app.configs) == {"etc/app.conf": sha, "etc/settings.json": b'{"level": 3}'}
    assert dict(build("0", state).containers["other"].configs) == {"x": sha}
    # a changed config file changes the container (and only it)
    changed = dict(state, **{"_config/app/etc/app.conf": "b" * 64})
    assert build("0", changed).containers["app"].digest != app.digest
    assert build("0", changed).containers["other"].digest == build("0", state).containers["other"].digest
