import pytest

from pvcore.settings import Setting, Settings, SettingsError


def test_override_beats_env_beats_default():
    env = {"PVCORE_STORAGE_DIR": "/env", "PVCORE_DEMO": "yes"}
    settings = Settings({"storage_dir": "/code"}, env=env)
    assert settings.storage_dir == "/code"
    assert settings.demo is True
    assert Settings(env={}).storage_dir == "var/storage"


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
