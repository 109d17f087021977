"""Configuration levels, the metadata override, the hooks and the two listings, in process."""
import json
import os

import pytest

import pv_config


class FakeUserMeta:
    """Stands in for the metadata plugin: a dict plus its ``meta.user`` events."""

    def __init__(self, initial=None):
        self.meta = dict(initial or {})
        self.core = None

    def put(self, key, value):
        if value is None:
            self.meta.pop(key, None)
        else:
            self.meta[key] = value
        self.core.publish("meta.user", key, {"value": value})


@pytest.fixture
def make(make_core, tmp_path):
    def make(conf_file=None, environ=None, meta=None, overrides=None):
        values = {"config_environ": lambda: dict(environ or {})}
        if conf_file is not None:
            path = str(tmp_path / "pantavisor.config")
            with open(path, "w") as fh:
                fh.write(conf_file)
            values["pv_config_file"] = path
        values.update(overrides or {})
        fake = FakeUserMeta()
        core = make_core(plugins=[pv_config, fake], overrides=values)
        fake.core = core
        for key, value in (meta or {}).items():  # what the metadata plugin publishes at start-up
            fake.put(key, value)
        return core, fake

    return make


def get(core, key):
    return core.hook.pv_config_get(core=core, key=key)


def config2(client):
    return {row["key"]: (row["value"], row["modified"]) for row in client.simulate_get("/config2").json}


def test_override_order_default_file_env_metadata_command(make, make_client):
    core, meta = make(conf_file="# comment\nPV_LOG_LEVEL=2\nPV_REVISION_RETRIES = 3\n",
                      environ={"PV_LOG_LEVEL": "3", "PATH": "/bin"})
    client = make_client(core)
    rows = config2(client)
    assert rows["PV_LOG_LEVEL"] == ("3", "env")
    assert rows["PV_REVISION_RETRIES"] == ("3", "pv conf file")
    assert rows["PV_UPDATER_COMMIT_DELAY"] == ("25", "default")
    meta.put("log.level", "4")
    assert config2(client)["PV_LOG_LEVEL"] == ("4", "metadata")
    assert core.hook.pv_config_set(core=core, key="PV_LOG_LEVEL", value=5, level="command") is True
    assert config2(client)["PV_LOG_LEVEL"] == ("5", "command")
    assert core.hook.pv_config_set(core=core, key="PV_LOG_LEVEL", value=None, level="command") is True
    assert config2(client)["PV_LOG_LEVEL"] == ("4", "metadata")
    meta.put("log.level", None)
    assert config2(client)["PV_LOG_LEVEL"] == ("3", "env")
    assert get(core, "log.level") == 3


def test_each_change_of_an_effective_value_is_published(make, make_client):
    core, meta = make(conf_file="PV_LOG_LEVEL=2\n")
    meta.put("log.level", "4")
    meta.put("log.level", "4")  # unchanged: no event
    assert core.hook.pv_config_set(core=core, key="PH_CREDS_SECRET", value="s3cret", level="env") is True
    meta.put("log.level", None)
    replay = make_client(core).simulate_get("/_pvcore/events", params={"since": "0", "types": "config"}).text
    assert [(e["subject"], e["data"]) for e in map(json.loads, replay.splitlines())] == [
        ("PV_LOG_LEVEL", {"value": "4", "level": "metadata"}),
        ("PH_CREDS_SECRET", {"value": "********", "level": "env"}),
        ("PV_LOG_LEVEL", {"value": "2", "level": "pv conf file"}),
    ]


def test_deleting_the_meta_key_reverts_to_the_file_value(make, make_client):
    core, meta = make(conf_file="PV_DEBUG_SSH=0\n")
    meta.put("PV_DEBUG_SSH", "yes")
    assert get(core, "debug.ssh") is True
    meta.put("PV_DEBUG_SSH", None)
    assert get(core, "PV_DEBUG_SSH") is False
    assert config2(make_client(core))["PV_DEBUG_SSH"] == ("0", "pv conf file")


def test_user_meta_present_at_startup_is_applied(make):
    core, _ = make(meta={"pv_log_level": "5", "unrelated": "x"})
    assert get(core, "PV_LOG_LEVEL") == 5


def test_meta_keys_match_canonical_any_case_and_aliases_exact_case(make):
    core, meta = make()
    meta.put("pv_revision_retries", "7")
    assert get(core, "PV_REVISION_RETRIES") == 7
    meta.put("LOG.LEVEL", "4")  # aliases are case-sensitive: ignored
    assert get(core, "PV_LOG_LEVEL") == 0
    meta.put("pantahub.log.push", "off")  # an input-only alias
    assert get(core, "PV_LOG_PUSH") is False


def test_meta_overrides_only_runtime_entries_with_parseable_values(make):
    core, meta = make()
    meta.put("system.init.mode", "embedded")  # not a run-time entry
    meta.put("log.level", "loud")  # does not parse as INT
    assert get(core, "system.init.mode") == "appengine"
    assert get(core, "log.level") == 0


def test_a_second_key_for_the_same_entry_takes_over_on_delete(make):
    core, meta = make()
    meta.put("PV_LOG_LEVEL", "2")
    meta.put("log.level", "4")
    assert get(core, "PV_LOG_LEVEL") == 4
    meta.put("log.level", None)
    assert get(core, "PV_LOG_LEVEL") == 2


def test_config_set_rejects_what_it_cannot_apply(make):
    core, _ = make()
    assert core.hook.pv_config_set(core=core, key="NOPE", value="1", level="command") is False
    assert core.hook.pv_config_set(core=core, key="PV_SYSTEM_INIT_MODE", value="embedded",
                                       level="command") is False
    assert core.hook.pv_config_set(core=core, key="PV_LOG_LEVEL", value="x", level="command") is False
    assert core.hook.pv_config_set(core=core, key="PV_LOG_LEVEL", value="1", level="bogus") is False
    assert core.hook.pv_config_set(core=core, key="debug.ssh", value=False, level="command") is True
    assert get(core, "PV_DEBUG_SSH") is False


def test_bad_file_and_env_values_keep_the_default(make):
    core, _ = make(conf_file="PV_LOG_LEVEL=high\nNOT_A_KEY=1\ngarbage line\nlog.level=\n",
                   environ={"PV_REVISION_RETRIES": "many"})
    assert get(core, "PV_LOG_LEVEL") == 0
    assert get(core, "PV_REVISION_RETRIES") == 10


def test_file_accepts_aliases_and_quotes(make):
    core, _ = make(conf_file='creds.host="hub.example.com"\nPV_SYSTEM_INIT_MODE=standalone\n')
    assert get(core, "PH_CREDS_HOST") == "hub.example.com"
    assert get(core, "system.init.mode") == "standalone"


def test_default_config_file_location(make_core, tmp_path):
    storage = str(tmp_path / "storage")
    os.makedirs(os.path.join(storage, "config"))
    with open(os.path.join(storage, "config", "pantavisor.config"), "w") as fh:
        fh.write("PV_LOG_LEVEL=4\n")
    core = make_core(plugins=[pv_config], overrides={"storage_dir": storage, "config_environ": dict})
    assert get(core, "log.level") == 4


def test_config_listing_types_and_order(make, make_client):
    core, _ = make(conf_file="PV_CONTROL_REMOTE=0\nPH_CREDS_ID=abc\n")
    resp = make_client(core).simulate_get("/config")
    assert resp.headers["content-type"] == "application/json"
    doc = resp.json
    assert doc["system.init.mode"] == 2
    assert doc["log.level"] == 0
    assert doc["log.server.outputs"] == 132
    assert doc["control.remote"] is False and doc["debug.ssh"] is True
    assert doc["creds.id"] == "abc" and doc["creds.prn"] is None
    assert doc["storage.mntpoint"] == core.settings.storage_dir
    assert doc["system.rundir"] == core.settings.run_dir
    assert doc["PV_SECUREBOOT_OEM_TRUSTORE"] == "ca-oem-certificates"
    assert "PV_OEM_NAME" not in doc and "pantahub.log.push" not in doc
    keys = list(doc)
    assert keys[:3] == ["creds.host", "creds.id", "creds.port"] and keys[-1] == "xconnect.dbus.systembus.enabled"


def test_config2_rows(make, make_client):
    core, _ = make()
    rows = make_client(core).simulate_get("/config2").json
    assert len(rows) == 113
    assert rows[0] == {"key": "PH_CREDS_HOST", "value": "api.pantahub.com", "modified": "default"}
    by_key = {row["key"]: row for row in rows}
    assert by_key["PV_SYSTEM_INIT_MODE"]["value"] == "appengine"
    assert by_key["PH_CREDS_ID"]["value"] == "(null)"
    assert by_key["PV_DEBUG_SSH"]["value"] == "1"
    assert by_key["PV_WDT_MODE"]["value"] == "shutdown"


def test_secrets_are_masked(make, make_client):
    core, _ = make(conf_file="PH_CREDS_SECRET=hunter2\n")
    client = make_client(core)
    legacy = client.simulate_get("/config")
    full = client.simulate_get("/config2")
    assert "hunter2" not in legacy.text and "hunter2" not in full.text
    assert legacy.json["creds.secret"] == "********"
    assert legacy.json["factory.autotok"] is None
    rows = {row["key"]: row for row in full.json}
    assert rows["PH_CREDS_SECRET"] == {"key": "PH_CREDS_SECRET", "value": "********", "modified": "pv conf file"}
    assert rows["PH_FACTORY_AUTOTOK"]["value"] == "(null)"
    assert get(core, "PH_CREDS_SECRET") == "hunter2"  # plugins still read the real value


def test_init_mode_follows_the_setting(make):
    core, _ = make(overrides={"init_mode": "embedded"})
    assert get(core, "system.init.mode") == "embedded"
    core, _ = make(overrides={"init_mode": "nonsense"})
    assert get(core, "system.init.mode") == "embedded"


def test_works_without_a_metadata_plugin(make_core, make_client):
    core = make_core(plugins=[pv_config], overrides={"config_environ": dict})
    assert make_client(core).simulate_get("/config").json["log.level"] == 0
