"""Driver module strings (the manifest and references are the revision model's: tests/plugins/pv_steps/test_steps_model.py)."""
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


def test_modprobe_argv_splits_params_like_a_shell():
    assert modprobe_argv("m", 'a=1 b="x y"') == ["modprobe", "m", "a=1", "b=x y"]
    assert modprobe_argv("m", 'a="unbalanced') == ["modprobe", "m", 'a="unbalanced']
    assert modprobe_argv("m") == ["modprobe", "m"]
