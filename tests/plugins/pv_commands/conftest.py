"""pv_commands' unit tests: the real pv_steps (transitions), fake engine, daemons,
config and metadata plugins."""
import json
import os
import sys
from types import SimpleNamespace

import pytest

import pv_commands
from pvcore import hookimpl

# The transition fakes (the watched pv_steps, the engine) live beside pv_steps' own tests.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pv_steps"))

from steps_helpers import FakeEngine, WatchedSteps, make_rev, point_current, state_of  # noqa: E402


class FakeDevice:
    """Daemons, config, device metadata, xconnect and activity recorders."""

    def __init__(self):
        self.config = {}
        self.config_sets = []
        self.daemon_actions = []
        self.device_meta = {}
        self.meta_calls = []
        self.reconciles = 0
        self.activity = []
        self.running = []
        self.commands = []

    @hookimpl
    def pv_config_get(self, core, key):
        return self.config.get(key)

    @hookimpl
    def pv_config_set(self, core, key, value, level):
        self.config_sets.append((key, value, level))
        return True

    @hookimpl
    def pv_daemons_control(self, core, name, action):
        self.daemon_actions.append((name, action))
        return True if name == "ssh" else None

    def _set_device_meta(self, key, value):
        self.meta_calls.append((key, value))
        if value is None:
            self.device_meta.pop(key, None)
        else:
            self.device_meta[key] = value

    @hookimpl
    def pvcore_event(self, core, event):
        # Stands in for the metadata plugin, which follows these events.
        if event.type == "commands.mode":
            self._set_device_meta("pantavisor.mode", event.subject)
        elif event.type == "commands.claimed":
            self._set_device_meta("pantahub.claimed", event.subject)
        elif event.type == "revision.running":
            self.running.append((event.data.get("old"), event.subject))

    @hookimpl
    def pv_commands_run(self, core, op, payload):
        self.commands.append((op, payload))
        if op == "XCONNECT_GRAPH":
            self.reconciles += 1
            return True
        if op == "UPDATE_METADATA":
            key, value = next(iter(json.loads(payload).items()))
            self._set_device_meta(key, value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))
            return True
        return None

    @hookimpl
    def pvcore_activity(self, core, name, active):
        self.activity.append((name, active))



class Kills:
    def __init__(self):
        self.calls = []

    def __call__(self, pid, signum):
        self.calls.append((pid, signum))


@pytest.fixture
def cmd_env(make_core, make_client):
    """``cmd_env(start=True, **overrides)`` → namespace with core, client and the fakes."""

    def build(start=True, extra_plugins=(), **overrides):
        import pv_steps

        engine, device, kills = FakeEngine(), FakeDevice(), Kills()
        settings = {"update_commit_delay": 0.05, "update_goals_timeout": 7.0, "power_kill": kills}
        settings.update(overrides)
        core = make_core(plugins=[pv_commands, pv_steps, engine, device, *extra_plugins], overrides=settings)
        for rev, state in {"0": state_of("one"), "locals/x": state_of("one", "two")}.items():
            make_rev(core.settings.storage_dir, rev, state)
        point_current(core.settings.storage_dir, "0")
        storage = WatchedSteps(core)
        if start:
            core.start()
        client = make_client(core)

        def post(op, payload="", **kwargs):
            return client.simulate_post("/commands", body=json.dumps({"op": op, "payload": payload}), **kwargs)

        return SimpleNamespace(core=core, client=client, storage=storage, engine=engine, device=device,
                               kills=kills, post=post)

    return build
