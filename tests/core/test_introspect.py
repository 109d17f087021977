"""pvcore's own extras under /_pvcore/: health, plugins, settings."""
from pvcore import hookimpl
from pvcore.settings import Setting
from pvcore.testing import ContainerCaller


class Hub:
    @hookimpl
    def pvcore_declare_settings(self):
        return [Setting("hub_token", str, "", "Token for the hub.", secret=True),
                Setting("hub_retries", int, 3, "Attempts per upload.")]


def test_settings_lists_core_and_plugin_settings_with_their_source(make_core, make_client):
    core = make_core(plugins=[("pv_hub", Hub())], overrides={"hub_token": "s3cr3t"})
    resp = make_client(core).simulate_get("/_pvcore/settings")
    assert resp.status_code == 200
    settings = {entry["name"]: entry for entry in resp.json}
    assert settings["storage_dir"]["owner"] == "pvcore"
    assert settings["storage_dir"]["source"] == "override"  # make_core puts it in a temp dir
    assert settings["hub_retries"] == {
        "name": "hub_retries", "value": 3, "source": "default", "default": 3, "type": "int",
        "env": "PVCORE_HUB_RETRIES", "owner": "pv_hub", "secret": False, "help": "Attempts per upload.",
    }
    assert settings["hub_token"]["value"] == "********"
    assert "s3cr3t" not in resp.text


def test_settings_are_for_mgmt_only(make_core, make_client):
    core = make_core(plugins=[ContainerCaller("app", roles=[])])
    resp = make_client(core).simulate_get("/_pvcore/settings")
    assert resp.status_code == 403


def test_plugins_lists_inline_plugins_by_readable_name(make_core, make_client):
    core = make_core(plugins=[Hub()])
    names = [entry["name"] for entry in make_client(core).simulate_get("/_pvcore/plugins").json]
    assert "Hub" in names
