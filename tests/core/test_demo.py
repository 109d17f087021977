"""The embedded demo device's factory revision."""
import hashlib
import json
import os
import pathlib
import sys

from pvcore_demo import CLIENT, SERVER, demo_state, seed, state_json


def test_seed_installs_the_factory_revision_through_its_owners(make_core, monkeypatch):
    core = make_core(load_entrypoints=True)
    storage = core.settings.storage_dir
    # The demo writes none of the owners' files: every one of them comes from
    # pv_objects or pv_steps (their contracts), none from pvcore_demo.
    writes = []
    real_open = os.open

    def watching_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and str(path).startswith(storage):
            frame, owners = sys._getframe(1), set()
            while frame is not None:
                owners.add(frame.f_globals.get("__name__", "").split(".")[0])
                frame = frame.f_back
            writes.append((str(path), owners & {"pv_objects", "pv_steps"}))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", watching_open)
    assert seed(core) is True
    monkeypatch.undo()
    assert writes and [path for path, owners in writes if not owners] == []
    assert core.call("pv_steps_running_revision") == "0"
    trails = pathlib.Path(storage) / "trails"
    assert os.readlink(trails / "current") == "0"
    assert (trails / "0" / ".pvr" / "json").read_bytes() == state_json(demo_state()[0])
    state = json.loads((trails / "0" / ".pvr" / "json").read_text())
    assert {f"{SERVER}/run.json", f"{CLIENT}/run.json", "pvr-sdk/run.json", "bsp/drivers.json"} <= set(state)
    for key, value in state.items():
        if isinstance(value, str) and len(value) == 64:
            data = pathlib.Path(core.call("pv_objects_object_path", sha=value)).read_bytes()
            assert hashlib.sha256(data).hexdigest() == value
    progress = json.loads((trails / "0" / ".pv" / "progress").read_text())
    assert (progress["status"], progress["status-msg"]) == ("DONE", "Factory revision")
    # loaded as at boot: the engine knows the revision's containers
    assert {SERVER, CLIENT, "pvr-sdk"} <= {c["name"] for c in make_client_json(core, "/containers")}


def make_client_json(core, path):
    from pvcore.testing import PvTestClient

    return PvTestClient(core).simulate_get(path).json


def test_seed_never_touches_a_device_that_has_revisions(make_core):
    core = make_core(load_entrypoints=True)
    assert seed(core)
    trail = pathlib.Path(core.settings.storage_dir) / "trails" / "0" / ".pvr" / "json"
    trail.write_text("{}")
    again = make_core(load_entrypoints=True, overrides={"storage_dir": core.settings.storage_dir})
    assert seed(again) is False
    assert trail.read_text() == "{}"


def test_without_the_owners_the_demo_seeds_nothing(make_core):
    core = make_core(load_entrypoints=True, disabled=["pv_steps"])
    assert seed(core) is False
    assert not os.path.exists(os.path.join(core.settings.storage_dir, "trails", "0"))


def test_example_containers_wait_for_ready_and_the_client_is_unprivileged():
    state, objects = demo_state()
    client = state[f"{CLIENT}/run.json"]
    server = state[f"{SERVER}/run.json"]
    assert client["status_goal"] == server["status_goal"] == "READY"
    assert client["roles"] == [] and "roles" not in server
    assert client["services"]["required"][0]["name"] == state[f"{SERVER}/services.json"]["services"][0]["name"]
    assert "--ready" in client["exec"]
