"""pv_commands' unit tests: the real pv_steps (transitions), fake engine, daemons,
config and metadata plugins."""
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
    """The real pv_steps (which carries out transitions and GC), watched: progress
    writes, boot-record changes and the keep-set of each GC, in order."""

    def __init__(self, core):
        import pv_steps

        self.steps = core.stash[pv_steps.STEPS]
        self.progress = []
        self.calls = []
        self.gc_in_use = None
        trails, steps = self.steps.trails, self.steps
        write_progress, set_running, collect = trails.write_progress, steps.set_running, steps.collect

        def record_progress(rev, status, message, logs=None):
            self.progress.append((rev, status, message))
            return write_progress(rev, status, message, logs)

        def record_set_running(rev, try_once=False):
            self.calls.append(("set_running", rev, bool(try_once)))
            return set_running(rev, try_once)

        def record_collect(keep):
            self.gc_in_use = sorted(keep)
            return collect(keep)

        trails.write_progress, steps.set_running, steps.collect = record_progress, record_set_running, record_collect

    @staticmethod
    def seed(storage_dir):
        import os

        for rev, state in {"0": state_of("one"), "locals/x": state_of("one", "two")}.items():
            path = os.path.join(storage_dir, "trails", rev)
            os.makedirs(os.path.join(path, ".pvr"), exist_ok=True)
            with open(os.path.join(path, ".pvr", "json"), "w") as fh:
                json.dump(state, fh)
        os.symlink("0", os.path.join(storage_dir, "trails", "current"))

    def point_current(self, rev):
        self.steps.trails.point_current(rev)

    def statuses(self, rev):
        return [(status, message) for r, status, message in self.progress if r == rev]

    def last_status(self, rev):
        statuses = self.statuses(rev)
        return statuses[-1][0] if statuses else None


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
    def pv_containers_run_revision(self, core, revision, only_changed, timeout):
        rev = revision.rev
        self.runs.append(SimpleNamespace(rev=rev, revision=revision, only_changed=only_changed, timeout=timeout))
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
        import pv_steps

        engine, device, kills = FakeEngine(), FakeDevice(), Kills()
        settings = {"update_commit_delay": 0.05, "update_goals_timeout": 7.0, "power_kill": kills}
        settings.update(overrides)
        core = make_core(plugins=[pv_commands, pv_steps, engine, device, *extra_plugins], overrides=settings)
        FakeStorage.seed(core.settings.storage_dir)
        storage = FakeStorage(core)
        if start:
            core.start()
        client = make_client(core)

        def post(op, payload="", **kwargs):
            return client.simulate_post("/commands", body=json.dumps({"op": op, "payload": payload}), **kwargs)

        return SimpleNamespace(core=core, client=client, storage=storage, engine=engine, device=device,
                               kills=kills, post=post)

    return build
