"""Checked hook names (pvcore/names.py): a misspelling fails loudly."""
import sys

import pytest

from pvcore import hookimpl
from pvcore.errors import StartupError
from pvcore.names import UnknownHook


def test_calling_a_misspelled_hook_of_a_loaded_owner_raises_with_a_suggestion(make_core):
    import pv_steps

    core = make_core(plugins=[pv_steps])
    with pytest.raises(UnknownHook, match="pv_steps_revison is no hook of pv_steps; did you mean pv_steps_revision"):
        core.call("pv_steps_revison", rev="current")


def test_calling_a_hook_of_an_absent_owner_answers_the_default(make_core):
    core = make_core()  # pv_steps is installed but not loaded
    assert core.call("pv_steps_revision", default="none", rev="current") == "none"
    blocked = make_core(load_entrypoints=True, disabled=["pv_objects"])
    assert blocked.call("pv_objects_missing", default=["x"], shas=["x"]) == ["x"]


def test_calling_a_name_no_plugin_could_declare_raises(make_core):
    core = make_core()
    with pytest.raises(UnknownHook, match="no loaded or installed plugin declares a hook named nobody_knows"):
        core.call("nobody_knows")


def test_a_misspelled_optional_implementation_fails_the_boot(make_core):
    import pv_daemons

    class Daemon:
        @hookimpl(optionalhook=True)
        def pv_daemons_declre(self, core):
            return []

    with pytest.raises(StartupError) as info:
        make_core(plugins=[pv_daemons, ("mydaemon", Daemon())])
    assert str(info.value) == ("plugin mydaemon: optional hook pv_daemons_declre matches no hook of pv_daemons; "
                               "did you mean pv_daemons_declare?")


def test_an_optional_implementation_of_an_absent_owner_boots(make_core):
    class Daemon:
        @hookimpl(optionalhook=True)
        def pv_daemons_declare(self, core):
            return []

    make_core(plugins=[Daemon()])


def test_a_literal_core_call_of_an_unknown_hook_fails_the_boot(make_core, tmp_path, monkeypatch):
    source = tmp_path / "typo_plugin.py"
    source.write_text("def use(core):\n    return core.call('pv_config_gte', key='x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import pv_config
    import typo_plugin

    try:
        with pytest.raises(StartupError, match="plugin typo_plugin: typo_plugin.py calls pv_config_gte is no hook "
                                               "of pv_config; did you mean pv_config_get"):
            make_core(plugins=[pv_config, ("typo_plugin", typo_plugin)])
    finally:
        sys.modules.pop("typo_plugin", None)


def test_every_builtin_cross_plugin_call_names_a_declared_hook(make_core):
    """All literal core.call sites of the installed plugins resolve (each is
    checked at boot too: this boot would fail)."""
    from pvcore.names import static_calls

    core = make_core(load_entrypoints=True)
    calls = {name for _n, plugin in core.pm.list_name_plugin() if plugin is not None
             for _path, name in static_calls(plugin)}
    assert len(calls) >= 15
    assert all(getattr(core.hook, name).spec is not None for name in calls), calls
