"""Declared ownership (pvcore/ownership.py): one owner per path, device-meta key
and event type; an event published only by its owner."""
import pytest

from pvcore import hookimpl
from pvcore.errors import StartupError
from pvcore.ownership import MetaFact, Owns, UndeclaredEvent


def owner(name, **owns):
    class Plugin:
        @hookimpl
        def pvcore_declare_ownership(self):
            return Owns(**owns)
    return (name, Plugin())


@pytest.mark.parametrize("first, second, clash", [
    ({"paths": {"<storage>/things/": ""}}, {"paths": {"<storage>/things/": ""}}, "path <storage>/things/"),
    ({"paths": {"<storage>/things/": ""}}, {"paths": {"<storage>/things/<c>/log": ""}}, "path <storage>/things/<c>/log"),
    ({"paths": {"<storage>/logs/<rev>/": ""}}, {"paths": {"<storage>/logs/<name>/": ""}}, "path <storage>/logs/<name>/"),
    ({"device_meta": {"pantavisor.mode": ""}}, {"device_meta": {"pantavisor.mode": ""}}, "device-meta key pantavisor.mode"),
    ({"events": {"thing.made": ""}}, {"events": {"thing.made": ""}}, "event type thing.made"),
    ({"events": {"thing.*": ""}}, {"events": {"thing.made": ""}}, "event type thing.made"),
])
def test_two_owners_of_one_thing_fail_the_boot_naming_both(make_core, first, second, clash):
    with pytest.raises(StartupError) as info:
        make_core(plugins=[owner("alpha", **first), owner("beta", **second)])
    message = str(info.value)
    assert clash in message and "alpha" in message and "beta" in message


def test_a_named_segment_does_not_clash_with_a_placeholder(make_core):
    core = make_core(plugins=[owner("alpha", paths={"<storage>/logs/<rev>/": ""}),
                              owner("beta", paths={"<storage>/logs/daemons/": ""})])
    registry = core.ownership
    assert registry.path_owner("<storage>/logs/daemons/x.log").owner == "beta"
    assert registry.path_owner("<storage>/logs/locals/m1/web/console.log").owner == "alpha"
    assert registry.path_owner("<storage>/pvcore/alpha/anything").owner == "alpha"  # data_dir()
    assert registry.path_owner("<storage>/elsewhere") is None
    assert registry.is_layout("<storage>/logs") and not registry.is_layout("<storage>/elsewhere")


def test_paths_outside_the_two_roots_are_refused(make_core):
    with pytest.raises(StartupError, match="alpha: path '/etc/x' must start with"):
        make_core(plugins=[owner("alpha", paths={"/etc/x": ""})])


def test_naming_an_event_one_does_not_own_fails_the_boot(make_core):
    with pytest.raises(StartupError, match="alpha: declares thing.made but does not own"):
        make_core(plugins=[owner("alpha", caller_events=("thing.made",))])
    with pytest.raises(StartupError, match="alpha: declares other.x"):
        make_core(plugins=[owner("alpha", device_meta={"k": MetaFact("other.x")})])


def test_an_undeclared_event_type_is_refused_at_publish(make_core):
    core = make_core(plugins=[owner("alpha", events={"thing.made": ""})])
    assert core.publish("thing.made", "x").type == "thing.made"
    with pytest.raises(UndeclaredEvent, match="thing.lost is declared by no plugin"):
        core.publish("thing.lost", "x")


def test_a_plugin_publishing_another_plugins_type_is_refused(make_core):
    import pv_objects

    core = make_core(plugins=[pv_objects, owner("alpha", events={"thing.made": ""})])
    core.ownership.packages["test_ownership"] = "pv_objects"  # this module stands for pv_objects' code
    with pytest.raises(UndeclaredEvent, match="plugin pv_objects publishes thing.made, which plugin alpha owns"):
        core.publish("thing.made", "x")
    core.publish("object.stored", "x", {"size": 1})  # its own


def test_listeners_get_only_the_types_they_subscribed_to(make_core):
    heard = {"some": [], "all": []}

    class Some:
        @hookimpl
        def pvcore_declare_ownership(self):
            return Owns(events={"a.*": "", "b.one": ""}, listens=("a.*",))

        @hookimpl
        def pvcore_event(self, core, event):
            heard["some"].append(event.type)

    class All:
        @hookimpl
        def pvcore_event(self, core, event):
            heard["all"].append(event.type)

    core = make_core(plugins=[Some(), All()])
    for kind in ("a.x", "b.one", "a.y.z"):
        core.publish(kind, "s")
    assert heard == {"some": ["a.x", "a.y.z"], "all": ["a.x", "b.one", "a.y.z"]}


def test_a_literal_publish_of_an_undeclared_type_fails_the_boot(make_core, tmp_path, monkeypatch):
    import sys

    (tmp_path / "loud_plugin.py").write_text(
        "from pvcore import hookimpl\n"
        "from pvcore.ownership import Owns\n\n"
        "@hookimpl\ndef pvcore_declare_ownership():\n    return Owns(events={'loud.ok': ''})\n\n"
        "def shout(core):\n    core.publish('loud.typo', 'x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import loud_plugin

    try:
        with pytest.raises(StartupError, match="plugin loud_plugin: event type loud.typo is declared by no plugin"):
            make_core(plugins=[("loud_plugin", loud_plugin)])
    finally:
        sys.modules.pop("loud_plugin", None)
