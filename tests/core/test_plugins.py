"""Plugin discovery, validation and blocking."""
import pytest

from pvcore import hookimpl
from pvcore.errors import StartupError
from pvcore.plugins import disabled_from_env, get_plugin_manager, plugin_label

import pv_buildinfo


def test_builtins_are_found_through_entry_points():
    pm = get_plugin_manager()
    names = {name for name, plugin in pm.list_name_plugin() if plugin is not None}
    assert {"pv_buildinfo", "pvcore.caller", "pvcore.introspect"} <= names


def test_misspelled_hookimpl_fails_the_boot_with_the_plugin_named():
    class Typo:
        @hookimpl
        def pvcore_routez(self, core):
            return []

    with pytest.raises(StartupError) as info:
        get_plugin_manager(load_entrypoints=False, plugins=[("typo-plugin", Typo())])
    assert "typo-plugin" in str(info.value)
    assert "pvcore_routez" in str(info.value)


def test_hookimpl_with_an_argument_the_spec_lacks_fails_the_boot():
    class Bad:
        @hookimpl
        def pvcore_routes(self, core, app):
            return []

    with pytest.raises(StartupError, match="bad-args"):
        get_plugin_manager(load_entrypoints=False, plugins=[("bad-args", Bad())])


def test_disable_plugins_env_blocks_builtins(monkeypatch):
    monkeypatch.setenv("PVCORE_DISABLE_PLUGINS", "pv_buildinfo, other")
    assert disabled_from_env() == ["pv_buildinfo", "other"]
    pm = get_plugin_manager()
    assert pm.is_blocked("pv_buildinfo")
    assert pm.get_plugin("pv_buildinfo") is None


def test_disabled_plugin_route_becomes_unknown(make_core, make_client):
    core = make_core(load_entrypoints=True, disabled=["pv_buildinfo"])
    resp = make_client(core).simulate_get("/buildinfo")
    assert resp.status_code == 400
    assert resp.text == '{"Error":"unknown endpoint: /buildinfo"}'


def test_every_hookspec_is_documented():
    from pvcore import hookspecs
    from pvcore_dev import hookdoc

    specs = [getattr(hookspecs, n) for n in dir(hookspecs) if n.startswith("pvcore_")]
    assert len(specs) >= 9
    for name, module in hookdoc.contract_modules():
        contract = [getattr(module, n) for n in dir(module) if n.startswith(name + "_")]
        assert contract, name
        specs += contract
    for spec in specs:
        assert spec.__doc__ and len(spec.__doc__.strip()) > 20, spec.__name__


def test_an_installed_plugin_with_a_bad_hookimpl_is_named_with_its_distribution(tmp_path, monkeypatch):
    (tmp_path / "pvcore_badplugin.py").write_text(
        "from pvcore import hookimpl\n\n@hookimpl\ndef pvcore_routes(core, app):\n    return []\n")
    dist = tmp_path / "pvcore_badplugin-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pvcore-badplugin\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[pvcore]\npvcore_badplugin = pvcore_badplugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(StartupError) as info:
        get_plugin_manager()
    assert "pvcore_badplugin" in str(info.value)
    assert "pvcore-badplugin 1.2.3" in str(info.value)
    assert "\n" not in str(info.value)


def _installed_plugin(tmp_path, monkeypatch, module: str, source: str) -> None:
    """A distribution pvcore-<module> 1.2.3 whose entry point is ``source``."""
    (tmp_path / f"{module}.py").write_text(source)
    dist = tmp_path / f"{module}-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(f"[pvcore]\n{module} = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_plugin_that_cannot_be_imported_is_named_in_one_line(tmp_path, monkeypatch):
    _installed_plugin(tmp_path, monkeypatch, "pvcore_unimportable", "import pvcore_no_such_module\n")
    with pytest.raises(StartupError) as info:
        get_plugin_manager()
    assert str(info.value) == ("plugin pvcore_unimportable (pvcore-unimportable 1.2.3): cannot import "
                               "pvcore_unimportable: ModuleNotFoundError: No module named 'pvcore_no_such_module'")


def test_inline_plugins_get_readable_names():
    class Sampler:
        @hookimpl
        def pvcore_startup(self, core):
            pass

    pm = get_plugin_manager(load_entrypoints=False, plugins=[Sampler(), Sampler(), pv_buildinfo])
    names = {name for name, plugin in pm.list_name_plugin()}
    assert {"Sampler", "Sampler-2", "pv_buildinfo"} <= names
    assert plugin_label(pm, pm.get_plugin("Sampler")) == "Sampler (not installed)"
    assert plugin_label(pm, pv_buildinfo).startswith("pv_buildinfo (pvcore ")


def test_inline_plugins_can_be_disabled_by_their_readable_name():
    class Sampler:
        pass

    pm = get_plugin_manager(load_entrypoints=False, plugins=[Sampler()], disabled=["Sampler"])
    assert pm.get_plugin("Sampler") is None


def test_a_name_taken_twice_is_one_line():
    with pytest.raises(StartupError, match=r"^plugin twice \(not installed\): Plugin name already registered"):
        get_plugin_manager(load_entrypoints=False, plugins=[("twice", object()), ("twice", object())])
