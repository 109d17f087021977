"""Parsing bsp/drivers.json and run.json driver references."""
from pv_drivers import manifest
from pv_drivers.loaders import modprobe_argv


def test_substitute_user_meta_placeholders():
    meta = {"wifi.opts": "roamoff=1", "n": "2"}
    assert manifest.substitute("m ${user-meta:wifi.opts} x=${user-meta:n}", meta) == "m roamoff=1 x=2"
    assert manifest.substitute("m ${user-meta:absent}", meta) == "m "
    assert manifest.substitute("m ${user-meta:k}", None) == "m "
    assert manifest.substitute("m ${other:k}", meta) == "m ${other:k}"


def test_split_module():
    assert manifest.split_module("brcmfmac  a=1 b=2 ") == ("brcmfmac", "a=1 b=2")
    assert manifest.split_module("cfg80211") == ("cfg80211", "")
    assert manifest.split_module("   ") == ("", "")


def test_bsp_aliases_merge_and_ignore_bad_shapes():
    state = {"bsp/drivers.json": {"all": {"a": ["x"], "bad": "y", "b": ["z"]},
                                  "fitconfig:f1": {"b": ["w"]}, "fitconfig:f2": {"c": ["v"]}}}
    assert manifest.bsp_aliases(state) == {"a": ["x"], "b": ["z"]}
    assert manifest.bsp_aliases(state, "f1") == {"a": ["x"], "b": ["w"]}
    assert manifest.bsp_aliases({"bsp/drivers.json": "nope"}) == {}
    assert manifest.bsp_aliases(None) == {}


def test_references_in_type_order_and_robust():
    run = {"drivers": {"manual": ["m"], "required": ["r", 3], "optional": "notalist"}}
    assert manifest.references(run) == [("r", "REQUIRED"), ("m", "MANUAL")]
    assert manifest.references({"drivers": []}) == []
    assert manifest.references(None) == []


def test_modprobe_argv_splits_params_like_a_shell():
    assert modprobe_argv("m", 'a=1 b="x y"') == ["modprobe", "m", "a=1", "b=x y"]
    assert modprobe_argv("m", 'a="unbalanced') == ["modprobe", "m", 'a="unbalanced']
    assert modprobe_argv("m") == ["modprobe", "m"]
