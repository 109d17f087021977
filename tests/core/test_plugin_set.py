"""The suite loads an explicit plugin set: a third-party plugin installed beside
pvcore (as docs/plugins.md tells its author) never changes the suite's results.

The throwaway plugin here is installed the way pip installs one — a module and
its ``*.dist-info`` with a ``pvcore`` entry point on the import path — with a
contract of its own (which the hook reference would pick up) and a daemon
(whose ``daemon.status`` events a pv_daemons test would see).
"""
import importlib.metadata
import sys

import pytest

from pvcore_dev import hookdoc
from pvcore.plugins import ESSENTIAL_PLUGINS, get_plugin_manager
from pvcore.settings import Settings

PROBE = "pvtest_thirdparty"

MODULE = '''
import sys

from pvcore import hookimpl
from pvcore.services import DaemonSpec


@hookimpl
def pvcore_addhooks(pluginmanager):
    from pvtest_thirdparty import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def pv_daemons_declare(core):
    return [DaemonSpec("pvtest-thirdparty", [sys.executable, "-c", "import time; time.sleep(60)"])]


class Hello:
    def on_get(self, req, resp):
        resp.media = {"hello": "thirdparty"}


@hookimpl
def pvcore_routes(core):
    return [("/pvtest-thirdparty", Hello())]
'''

HOOKSPECS = '''
import pluggy

hookspec = pluggy.HookspecMarker("pvcore")


@hookspec
def pvtest_thirdparty_ping(core) -> None:
    """A contract of the third-party plugin's own."""
'''


@pytest.fixture(scope="module")
def thirdparty(tmp_path_factory):
    """A folder holding the installed throwaway plugin (for sys.path / PYTHONPATH)."""
    base = tmp_path_factory.mktemp("site")
    package = base / PROBE
    package.mkdir()
    (package / "__init__.py").write_text(MODULE)
    (package / "hookspecs.py").write_text(HOOKSPECS)
    info = base / f"{PROBE}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PROBE.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[pvcore]\n{PROBE} = {PROBE}\n")
    return str(base)


@pytest.fixture
def installed(thirdparty, monkeypatch):
    monkeypatch.syspath_prepend(thirdparty)
    yield
    for name in [m for m in sys.modules if m == PROBE or m.startswith(PROBE + ".")]:
        del sys.modules[name]


def test_the_suite_names_the_builtins_and_contribs_plugin_as_its_plugin_set(pvcore_plugins):
    declared = {ep.name for ep in importlib.metadata.distribution("pvcore").entry_points if ep.group == "pvcore"}
    assert pvcore_plugins is not None and set(pvcore_plugins) == declared | {"pvcore_wakelocks"}


def test_the_probe_is_an_installed_plugin(installed):
    # The control: loading every installed plugin does find it.
    pm = get_plugin_manager(disabled=())
    assert pm.get_plugin(PROBE) is not None


def test_the_suites_cores_leave_an_installed_plugin_out(installed, make_core, make_client):
    core = make_core(load_entrypoints=True)
    assert core.pm.get_plugin(PROBE) is None and core.pm.get_plugin("pv_steps") is not None
    assert make_client(core).simulate_get("/pvtest-thirdparty").status_code == 400


def test_the_hook_reference_leaves_an_installed_plugin_out(installed):
    assert PROBE not in [name for name, _ in hookdoc.contract_modules()]
    assert "pvtest_thirdparty_ping" not in hookdoc.render()


def test_the_plugins_setting_names_what_loads(installed, tmp_path):
    from pvcore.errors import StartupError
    from pvcore.loader import load_core

    dirs = {"storage_dir": str(tmp_path / "s"), "run_dir": str(tmp_path / "r")}
    core = load_core(dirs, env={"PVCORE_PLUGINS": "pv_buildinfo"})
    loaded = {name for name, plugin in core.pm.list_name_plugin() if plugin is not None}
    assert loaded == {"pv_buildinfo", *(module.__name__ for module in ESSENTIAL_PLUGINS)}
    assert Settings(dirs, env={"PVCORE_PLUGINS": "a, b"}).plugins == "a, b"
    with pytest.raises(StartupError, match="plugin pv_nonesuch .*no such pvcore entry point"):
        load_core(dirs, env={"PVCORE_PLUGINS": "pv_buildinfo,pv_nonesuch"})


@pytest.mark.gunicorn
def test_the_suites_servers_leave_an_installed_plugin_out(thirdparty, start_gunicorn):
    env = {"PYTHONPATH": thirdparty}
    server = start_gunicorn(env=env, demo=True)
    status, plugins = server.client().json("GET", "/_pvcore/plugins")
    assert status == 200 and PROBE not in [p["name"] for p in plugins]
    status, daemons = server.client().json("GET", "/daemons")
    assert "pvtest-thirdparty" not in [d["name"] for d in daemons]
    server.stop()
    # The control: the same server, told to, does load it.
    named = start_gunicorn(env=env, plugins=[PROBE])
    assert named.request("GET", "/pvtest-thirdparty")[0] == 200
