import json
import os
import shutil

import pytest

import pv_containers
import pv_groups
import pv_signal

from engine_server import storage_shim_path
from engine_fakes import Clock, FakeRuntime, FakeStorage, Recorder, RuntimePlugin


class Device:
    """A core with the engine plugins, a fake storage/runtime and a hand-moved clock."""

    def __init__(self, core, storage, runtime, clock, recorder):
        self.core = core
        self.storage = storage
        self.runtime = runtime
        self.clock = clock
        self.recorder = recorder
        self.engine = core.stash[pv_containers.ENGINE]

    def step(self, times=1):
        for _ in range(times):
            self.engine.step()

    def status(self, name):
        return self.engine.container(name).status.name

    def entry(self, name):
        listing = self.engine.container_list()
        # The kept response body must show what a fresh rendering shows, at
        # every point any test looks.
        assert json.loads(self.engine.container_list_json()) == listing
        return next(e for e in listing if e["name"] == name)


@pytest.fixture(name="make_device")
def _make_device(make_core):
    def make_device(state, overrides=None, clock=None):
        storage = FakeStorage(state)
        runtime = FakeRuntime()
        clock = clock or Clock()
        recorder = Recorder()
        values = {"containers_clock": clock, "stop_timeout": 1.0}
        values.update(overrides or {})
        core = make_core(plugins=[pv_containers, pv_groups, pv_signal, storage, RuntimePlugin(runtime), recorder],
                         overrides=values)
        return Device(core, storage, runtime, clock, recorder)

    return make_device


@pytest.fixture(name="storage_shim", scope="session")
def _storage_shim():
    path = storage_shim_path()
    yield path
    if path:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(name="device_env")
def _device_env(storage_shim):
    """gunicorn environment: the stand-in storage plugin on PYTHONPATH when needed."""
    if not storage_shim:
        return {}
    return {"PYTHONPATH": os.pathsep.join(filter(None, [storage_shim, os.environ.get("PYTHONPATH")]))}


@pytest.fixture(name="demo_server")
def _demo_server(start_gunicorn, device_env):
    return start_gunicorn(env=device_env, demo=True)
