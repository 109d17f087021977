"""The embedded demo device's factory revision."""
import hashlib
import json
import os

from pvcore.demo import CLIENT, SERVER, demo_state, seed_if_empty


def test_seed_lays_down_a_valid_factory_revision(tmp_path):
    storage = str(tmp_path)
    assert seed_if_empty(storage) is True
    trails = tmp_path / "trails"
    assert os.readlink(trails / "current") == "0"
    state = json.loads((trails / "0" / ".pvr" / "json").read_text())
    assert state["#spec"] == "pantavisor-service-system@1"
    assert {f"{SERVER}/run.json", f"{CLIENT}/run.json", "pvr-sdk/run.json", "bsp/drivers.json"} <= set(state)
    for key, value in state.items():
        if isinstance(value, str) and len(value) == 64:
            data = (tmp_path / "objects" / value).read_bytes()
            assert hashlib.sha256(data).hexdigest() == value
            assert os.path.samefile(tmp_path / "objects" / value, trails / "0" / key)
    progress = json.loads((trails / "0" / ".pv" / "progress").read_text())
    assert progress["status"] == "DONE"


def test_seed_never_touches_a_device_that_has_revisions(tmp_path):
    assert seed_if_empty(str(tmp_path))
    (tmp_path / "trails" / "0" / ".pvr" / "json").write_text("{}")
    assert seed_if_empty(str(tmp_path)) is False
    assert (tmp_path / "trails" / "0" / ".pvr" / "json").read_text() == "{}"


def test_example_containers_wait_for_ready_and_the_client_is_unprivileged():
    state, objects = demo_state()
    client = state[f"{CLIENT}/run.json"]
    server = state[f"{SERVER}/run.json"]
    assert client["status_goal"] == server["status_goal"] == "READY"
    assert client["roles"] == [] and "roles" not in server
    assert client["services"]["required"][0]["name"] == state[f"{SERVER}/services.json"]["services"][0]["name"]
    assert "--ready" in client["exec"]
