"""Fake storage, engine, daemons, config and metadata plugins for pv_commands' unit tests."""
import copy
import json
import threading
from types import SimpleNamespace

import pytest

import pv_commands
from pvcore import hookimpl

SHA_A = "a" * 64
SHA_B = "b" * 64


def state_of(*containers):
    return {"#spec": "pantavisor-service-system@1",
            **{f"{name}/run.json": {"name": name, "group": "app"} for name in containers}}


class FakeStorage:
    """Revisions in a dict; progress as a list of (rev, status, message)."""

    def __init__(self):
        self.revisions = {"0": state_of("one"), "locals/x": state_of("one", "two")}
        self.objects = {"0": [SHA_A], "locals/x": [SHA_A, SHA_B]}
        self.missing = set()
        self.running = "0"
        self.committed = "0"
        self.try_once = False
        self.progress = []
        self.calls = []
        self.gc_in_use = None

    def statuses(self, rev):
        return [(status, message) for r, status, message in self.progress if r == rev]

    def last_status(self, rev):
        statuses = self.statuses(rev)
        return statuses[-1][0] if statuses else None

    @hookimpl
    def pv_steps_running_revision(self, core):
        return self.running

    @hookimpl
    def pv_steps_revision_state(self, core, rev):
        state = self.revisions.get(self.running if rev == "current" else rev)
        return copy.deepcopy(state) if state is not None else None

    @hookimpl
    def pv_steps_revision_objects(self, core, rev):
        return list(self.objects.get(rev, [])) if rev in self.revisions else None

    @hookimpl
    def pv_objects_object_path(self, core, sha):
        return None if sha in self.missing else "/fake/objects/" + sha

    @hookimpl
    def pv_steps_set_progress(self, core, rev, status, message, logs):
        self.progress.append((rev, status, message))
        return True if rev in self.revisions else None

    @hookimpl
    def pv_steps_set_running_revision(self, core, rev, try_once):
        self.calls.append(("set_running", rev, try_once))
        self.running, self.try_once = rev, try_once
        return True

    @hookimpl
    def pv_steps_commit_revision(self, core, rev):
        self.calls.append(("commit", rev))
        self.committed = rev
        return True

    @hookimpl
    def pv_steps_make_factory(self, core, rev):
        self.calls.append(("make_factory", rev))
        if rev not in self.revisions:
            return None
        self.revisions["0"] = copy.deepcopy(self.revisions[rev])
        self.objects["0"] = list(self.objects[rev])
        return True

    @hookimpl
    def pv_objects_missing(self, core, shas):
        return [sha for sha in shas if sha in self.missing]

    @hookimpl
    def pv_commands_run(self, core, op, payload):
        if op != "RUN_GC":
            return None
        self.gc_in_use = sorted(r for group in core.hook.pv_steps_revisions_in_use(core=core) for r in group)
        return True


class FakeEngine:
    """run_revision succeeds unless the revision is in ``fail``; ``gate`` holds it."""

    def __init__(self):
        self.runs = []
        self.fail = set()
        self.raises = set()
        self.gate = None
        self.running = threading.Event()
        self.stops = 0

    @hookimpl
    def pv_containers_run_revision(self, core, rev, state, only_changed, timeout):
        self.runs.append(SimpleNamespace(rev=rev, state=state, only_changed=only_changed, timeout=timeout))
        self.running.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test forgot to open the engine gate"
        if rev in self.raises:
            raise RuntimeError("engine exploded")
        if rev in self.fail:
            return False, "Status goal not reached"
        return True, ""

    @hookimpl
    def pv_containers_stop(self, core, timeout):
        self.stops += 1
        return True


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
        elif event.type == "commands.unclaimed":
            self._set_device_meta("pantahub.claimed", None)
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
        storage, engine, device, kills = FakeStorage(), FakeEngine(), FakeDevice(), Kills()
        settings = {"update_commit_delay": 0.05, "update_goals_timeout": 7.0, "power_kill": kills}
        settings.update(overrides)
        core = make_core(plugins=[pv_commands, storage, engine, device, *extra_plugins], overrides=settings)
        if start:
            core.start()
        client = make_client(core)

        def post(op, payload="", **kwargs):
            return client.simulate_post("/commands", body=json.dumps({"op": op, "payload": payload}), **kwargs)

        return SimpleNamespace(core=core, client=client, storage=storage, engine=engine, device=device,
                               kills=kills, post=post)

    return build
