"""The trust contract in process: settings through pv_config's levels, user metadata
unable to weaken them, and the object re-hash (docs/protocol.md §D12)."""
import hashlib
import os

import pytest

import pv_config
import pv_objects
import pv_secureboot
from secureboot_helpers import app_state, compact

U = "State not fully covered by signatures"


class UserMeta:
    """Publishes ``meta.user`` as the metadata plugin does (a container's PUT /user-meta)."""

    core = None

    def put(self, key, value):
        self.core.publish("meta.user", key, {"value": value})


@pytest.fixture
def device(make_core, tmp_path):
    def build(conf_file="", environ=None):
        path = tmp_path / "pantavisor.config"
        path.write_text(conf_file)
        meta = UserMeta()
        core = make_core(plugins=[pv_config, pv_objects, pv_secureboot, meta], overrides={
            "pv_config_file": str(path), "config_environ": lambda: dict(environ or {})})
        meta.core = core
        state = tmp_path / "json"
        state.write_bytes(compact(app_state()))
        return core, meta, str(state)

    return build


def verify(core, path):
    return core.call("pv_secureboot_verify_state", path=path)


def test_default_is_lenient(device):
    core, _, state = device()
    assert verify(core, state) is None


def test_mode_from_the_config_file_by_key_or_alias(device):
    for line in ("PV_SECUREBOOT_MODE=strict\n", "secureboot.mode=strict\n"):
        core, _, state = device(conf_file=line)
        assert verify(core, state) == U


def test_env_overrides_the_config_file(device):
    core, _, state = device(conf_file="PV_SECUREBOOT_MODE=strict\n", environ={"PV_SECUREBOOT_MODE": "disabled"})
    assert verify(core, state) is None


def test_user_metadata_cannot_weaken_secure_boot(device):
    core, meta, state = device(conf_file="PV_SECUREBOOT_MODE=strict\n")
    for key in ("PV_SECUREBOOT_MODE", "secureboot.mode"):
        meta.put(key, "disabled")
    meta.put("PV_SECUREBOOT_CHECKSUM", "0")
    assert verify(core, state) == U
    assert core.call("pv_config_get", key="PV_SECUREBOOT_CHECKSUM") is True


def _store(core, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    directory = os.path.join(core.settings.storage_dir, "objects")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, sha), "wb") as fh:
        fh.write(data)
    return sha


def test_objects_are_rehashed(device):
    core, _, _ = device()
    core.start()
    good, bad = _store(core, b"good"), _store(core, b"bad")
    with open(os.path.join(core.settings.storage_dir, "objects", bad), "wb") as fh:
        fh.write(b"tampered")
    objects = {"a/root.squashfs": good, "b/root.squashfs": bad, "c/root.squashfs": bad, "d/x": "0" * 64}
    assert core.call("pv_secureboot_corrupt_objects", objects=objects) == ["b/root.squashfs", "c/root.squashfs",
                                                                           "d/x"]


def test_checksum_off(device):
    core, _, _ = device(environ={"PV_SECUREBOOT_CHECKSUM": "0"})
    core.start()
    assert core.call("pv_secureboot_corrupt_objects", objects={"a/x": "0" * 64}) == []
