import json

import pytest

from pvcore.settings import CORE_SETTINGS, Setting, Settings, SettingsError

CORE = {setting.name: setting for setting in CORE_SETTINGS}


def test_override_beats_env_beats_default():
    env = {"PVCORE_STORAGE_DIR": "/env", "PVCORE_DEMO": "yes"}
    settings = Settings({"storage_dir": "/code"}, env=env)
    assert settings.storage_dir == "/code"
    assert settings.demo is True
    assert Settings(env={}).storage_dir == "/storage"


def test_defaults_are_a_devices_and_absolute():
    settings = Settings(env={})
    assert (settings.storage_dir, settings.run_dir) == ("/storage", "/run/pantavisor/pv")
    assert settings.socket_path == "/run/pantavisor/pv/pv-ctrl"
    for entry in settings.describe():
        if entry["name"].endswith(("_dir", "_path", "socket")) and entry["default"]:
            assert entry["default"].startswith("/"), entry


def test_the_demo_device_has_its_own_values_shown_as_such(tmp_path):
    settings = Settings(env={"PVCORE_DEMO": "1"})
    settings.declare([Setting("widget_dir", str, "/var/lib/widgets", "Widgets.", demo="var/widgets"),
                      Setting("widgets", int, 3, "How many.")], owner="w")
    assert (settings.storage_dir, settings.source("storage_dir")) == ("var/storage", "demo")
    assert (settings.widget_dir, settings.source("widget_dir")) == ("var/widgets", "demo")
    assert (settings.widgets, settings.source("widgets")) == (3, "default")
    described = {entry["name"]: entry for entry in settings.describe()}
    assert described["storage_dir"]["default"] == "/storage" and described["storage_dir"]["demo"] == "var/storage"
    assert "demo" not in described["widgets"]
    # Whatever the device maker says wins over the demo's value.
    conf = tmp_path / "pvcore.conf"
    conf.write_text("storage_dir = /data/storage\n")
    mine = Settings(env={"PVCORE_DEMO": "1", "PVCORE_RUN_DIR": "/r"}, file=str(conf))
    assert (mine.storage_dir, mine.source("storage_dir")) == ("/data/storage", "file")
    assert (mine.run_dir, mine.source("run_dir")) == ("/r", "environment")


def test_socket_defaults_to_the_run_dir():
    assert Settings({"run_dir": "/r"}, env={}).socket_path == "/r/pv-ctrl"
    assert Settings({"socket": "/s"}, env={}).socket_path == "/s"


def test_bad_values_and_unknown_names_are_errors():
    with pytest.raises(SettingsError, match="PVCORE_STOP_TIMEOUT"):
        Settings(env={"PVCORE_STOP_TIMEOUT": "soon"})
    with pytest.raises(SettingsError):
        Settings(env={}).get("nope")


def test_plugins_declare_settings_once():
    settings = Settings(env={"PVCORE_WIDGETS": "3"})
    settings.declare([Setting("widgets", int, 1, "How many widgets.")], owner="w")
    assert settings.get("widgets") == 3
    with pytest.raises(SettingsError, match="twice"):
        settings.declare([Setting("widgets", int, 1, "again")], owner="x")


def test_callables_can_only_be_injected_in_code():
    with pytest.raises(SettingsError):
        Settings(env={"PVCORE_FREE_SPACE": "10"})
    assert Settings({"free_space": lambda path: 7}, env={}).free_space("/") == 7


def test_a_settings_file_sits_between_the_environment_and_the_default(tmp_path):
    conf = tmp_path / "pvcore.conf"
    conf.write_text("# a device's settings\n\nstop_timeout = 9\nPVCORE_INIT_MODE=embedded\nlog_level = debug\n")
    settings = Settings({"log_level": "error"}, env={"PVCORE_SETTINGS_FILE": str(conf), "PVCORE_STOP_TIMEOUT": "7"})
    assert (settings.stop_timeout, settings.source("stop_timeout")) == (7.0, "environment")
    assert (settings.init_mode, settings.source("init_mode")) == ("embedded", "file")
    assert (settings.log_level, settings.source("log_level")) == ("error", "override")
    assert (settings.demo, settings.source("demo")) == (False, "default")


@pytest.mark.parametrize("text, message", [
    ("stop_timeout 9\n", r"pvcore.conf:1: expected 'name = value'"),
    ("\nstop_timeout = soon\n", r"pvcore.conf:2: stop_timeout='soon'"),
])
def test_a_bad_settings_file_names_file_and_line(tmp_path, text, message):
    (tmp_path / "pvcore.conf").write_text(text)
    with pytest.raises(SettingsError, match=message):
        Settings(env={}, file=str(tmp_path / "pvcore.conf"))


def test_a_missing_settings_file_is_an_error():
    with pytest.raises(SettingsError, match="settings file /nonexistent/pvcore.conf"):
        Settings(env={"PVCORE_SETTINGS_FILE": "/nonexistent/pvcore.conf"})


def test_describe_lists_value_source_and_help_with_secrets_masked():
    settings = Settings({"free_space": lambda path: 7}, env={"PVCORE_DEMO": "1", "PVCORE_HUB_TOKEN": "s3cr3t"})
    settings.declare([Setting("hub_token", str, "", "Token for the hub.", secret=True),
                      Setting("hub_url", str, "https://hub", "The hub.")], owner="pv_hub")
    described = {entry["name"]: entry for entry in settings.describe()}
    assert described["demo"] == {
        "name": "demo", "value": True, "source": "environment", "default": False, "type": "bool",
        "env": "PVCORE_DEMO", "owner": "pvcore", "secret": False, "help": CORE["demo"].help,
    }
    assert described["hub_token"]["value"] == "********" and described["hub_token"]["owner"] == "pv_hub"
    assert "s3cr3t" not in json.dumps(settings.describe())
    assert described["hub_url"]["source"] == "default"
    assert described["free_space"]["source"] == "override"
    assert described["free_space"]["default"] == "pvcore.settings._free_space"
    json.dumps(settings.describe())  # every value is JSON


def test_supply_replaces_only_a_default():
    settings = Settings(env={})
    assert settings.supply("buildinfo", "manifest", source="demo") is True
    assert (settings.buildinfo, settings.source("buildinfo")) == ("manifest", "demo")
    given = Settings(env={"PVCORE_BUILDINFO": "mine"})
    assert given.supply("buildinfo", "manifest", source="demo") is False
    assert given.buildinfo == "mine"
