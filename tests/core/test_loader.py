"""load_core: from environment to Core, the demo device included."""
import platform
import sys

import pytest

from pvcore.errors import StartupError

from pvcore.loader import load_core


def _dirs(tmp_path):
    return {"storage_dir": str(tmp_path / "storage"), "run_dir": str(tmp_path / "run")}


def test_the_demo_device_serves_a_manifest_of_what_runs(tmp_path, make_client):
    core = load_core({**_dirs(tmp_path), "demo": True}, env={})
    manifest = make_client(core).simulate_get("/buildinfo").text
    lines = manifest.splitlines()
    assert lines[0].startswith("pvcore 0.") and lines[0].endswith("(demo device)")
    assert f"python {platform.python_implementation()} {platform.python_version()}" in lines
    assert "  pv_steps (pvcore " in manifest and "  pv_buildinfo (pvcore " in manifest
    assert core.settings.source("buildinfo") == "demo"


def test_a_demo_device_keeps_the_manifest_it_is_given(tmp_path, make_client):
    core = load_core(_dirs(tmp_path), env={"PVCORE_DEMO": "1", "PVCORE_BUILDINFO": "pantavisor 029"})
    assert make_client(core).simulate_get("/buildinfo").text == "pantavisor 029"
    assert core.settings.source("buildinfo") == "environment"


def test_a_device_that_is_not_the_demo_has_no_manifest_unless_given(tmp_path, make_client):
    core = load_core(_dirs(tmp_path), env={})
    assert make_client(core).simulate_get("/buildinfo").text == ""


def test_plugins_are_disabled_through_the_setting_from_any_source(tmp_path, make_client):
    conf = tmp_path / "pvcore.conf"
    conf.write_text("disable_plugins = pv_buildinfo\n")
    core = load_core(_dirs(tmp_path), env={"PVCORE_SETTINGS_FILE": str(conf)})
    assert core.pm.get_plugin("pv_buildinfo") is None
    assert make_client(core).simulate_get("/buildinfo").status_code == 400
    settings = {entry["name"]: entry for entry in make_client(core).simulate_get("/_pvcore/settings").json}
    assert (settings["disable_plugins"]["value"], settings["disable_plugins"]["source"]) == ("pv_buildinfo", "file")
    assert settings["threads"]["value"] == 16


def test_trace_hooks_is_a_setting(tmp_path, log_output):
    core = load_core(_dirs(tmp_path), env={"PVCORE_TRACE_HOOKS": "1"})
    core.hook.pv_steps_running_revision(core=core)
    assert any(e["event"] == "hook_call" and e["hook"] == "pv_steps_running_revision" for e in log_output)


def test_the_demo_without_its_distribution_is_a_one_line_boot_error(tmp_path, monkeypatch):
    # A device installs pvcore without contrib/pvcore-demo: asking for the demo says so.
    monkeypatch.setitem(sys.modules, "pvcore_demo", None)
    with pytest.raises(StartupError, match="pip install contrib/pvcore-demo"):
        load_core({**_dirs(tmp_path), "demo": True}, env={})
