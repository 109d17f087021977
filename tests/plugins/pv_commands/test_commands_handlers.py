"""The non-transition ops, carried out by the worker through other plugins' hooks."""
import json
import os
import signal
import subprocess
import time
from types import SimpleNamespace

import pytest

import pv_commands
from pv_commands.power import SystemPower
from pvcore import hookimpl
from pvcore.testing import wait_until


def done(log_output, op):
    return [e for e in log_output if e["event"] == "command_done" and e["op"] == op]


def test_run_gc_collects_and_logs_the_total(cmd_env, log_output):
    env = cmd_env()
    assert env.post("RUN_GC").status_code == 200
    wait_until(lambda: done(log_output, "RUN_GC"))
    assert env.storage.gc_in_use == []
    assert done(log_output, "RUN_GC")[0]["ok"] is True


@pytest.mark.parametrize("op, value, action", [("ENABLE_SSH", True, "start"), ("DISABLE_SSH", False, "stop")])
def test_ssh_toggles_config_and_daemon(cmd_env, log_output, op, value, action):
    env = cmd_env()
    assert env.post(op).status_code == 200
    wait_until(lambda: done(log_output, op))
    assert env.device.config_sets == [("PV_DEBUG_SSH", value, "command")]
    assert env.device.daemon_actions == [("ssh", action)]
    assert done(log_output, op)[0]["ok"] is True


def test_xconnect_graph_asks_for_reconcile(cmd_env, log_output):
    env = cmd_env()
    env.post("XCONNECT_GRAPH")
    wait_until(lambda: done(log_output, "XCONNECT_GRAPH"))
    assert env.device.reconciles == 1


def test_update_metadata_goes_to_its_owner(cmd_env, log_output):
    env = cmd_env()
    env.core.stash[pv_commands.STATE].remote = True  # UPDATE_METADATA is for remote mode
    assert env.post("UPDATE_METADATA", '{"site": "lab", "ignored": "x"}').status_code == 200
    wait_until(lambda: done(log_output, "UPDATE_METADATA"))
    # the slot frees just after the first is done: a 503 until then
    wait_until(lambda: env.post("UPDATE_METADATA", {"geo": {"lat": 1}}).status_code == 200)
    wait_until(lambda: len(done(log_output, "UPDATE_METADATA")) == 2)
    assert env.device.commands == [("UPDATE_METADATA", '{"site": "lab", "ignored": "x"}'),
                                   ("UPDATE_METADATA", '{"geo":{"lat":1}}')]
    assert env.device.device_meta == {"site": "lab", "geo": '{"lat":1}',
                                      "pantavisor.mode": "local", "pantahub.claimed": "0"}


def test_update_metadata_stores_first_pair_and_queues_it(make_core, make_client, log_output):
    import pv_commands
    import pv_metadata

    core = make_core(plugins=[pv_commands, pv_metadata])
    core.start()
    core.stash[pv_commands.STATE].remote = True  # UPDATE_METADATA is for remote mode
    client = make_client(core)
    for payload in ('{"site": "lab", "ignored": "x"}', {"geo": {"lat": 1}}):
        client.simulate_post("/commands", body=json.dumps({"op": "UPDATE_METADATA", "payload": payload}))
        wait_until(lambda: client.simulate_get("/commands").status_code and not core.stash[pv_commands.STATE].slot)
    wait_until(lambda: len(done(log_output, "UPDATE_METADATA")) == 2)
    meta = client.simulate_get("/device-meta").json
    assert (meta["site"], meta["geo"]) == ("lab", {"lat": 1})
    path = os.path.join(core.settings.storage_dir, "pvcore", "pv_metadata", "pending-devmeta.jsonl")
    with open(path) as fh:
        lines = [json.loads(line) for line in fh]
    assert [(line["key"], line["value"]) for line in lines] == [("site", "lab"), ("geo", '{"lat":1}')]


def test_unclaim_marks_the_device_unclaimed(cmd_env, log_output):
    env = cmd_env(claimed=True)
    env.post("UNCLAIM")
    wait_until(lambda: done(log_output, "UNCLAIM"))
    assert env.device.meta_calls[-1] == ("pantahub.claimed", "0")
    assert env.device.device_meta["pantahub.claimed"] == "0"
    assert os.path.exists(os.path.join(env.core.settings.storage_dir, "pvcore", "pv_commands", "unclaimed"))


def test_demo_poweroff_stops_containers_then_signals_gunicorn_master(cmd_env, log_output):
    env = cmd_env()
    env.post("POWEROFF_DEVICE", "bye")
    wait_until(lambda: env.kills.calls)
    assert env.kills.calls == [(os.getppid(), signal.SIGTERM)]
    assert env.engine.stops == 1
    assert ("shutdown", True) in env.device.activity
    assert any(e["event"] == "demo_poweroff" for e in log_output)


def test_demo_reboot_restarts_the_worker(cmd_env):
    env = cmd_env()
    env.post("REBOOT_DEVICE", "again")
    wait_until(lambda: env.kills.calls)
    assert env.kills.calls == [(os.getpid(), signal.SIGTERM)]
    assert env.engine.stops == 1


def test_held_reboot_drops_other_commands_and_can_be_deferred(cmd_env, log_output):
    env = cmd_env(reboot_delay=30.0)
    env.post("REBOOT_DEVICE", "later")
    wait_until(lambda: done(log_output, "REBOOT_DEVICE"))
    assert env.kills.calls == []
    env.post("RUN_GC")
    wait_until(lambda: any(e["event"] == "command_dropped" and e["op"] == "RUN_GC" for e in log_output))
    assert env.storage.gc_in_use is None
    wait_until(lambda: env.post("DEFER_REBOOT", "1").status_code == 200)
    wait_until(lambda: env.kills.calls, timeout=5)
    assert env.kills.calls == [(os.getpid(), signal.SIGTERM)]
    assert any(e["event"] == "reboot_deferred" and e["seconds"] == 1 for e in log_output)


def test_defer_reboot_without_pending_reboot_does_nothing(cmd_env, log_output):
    env = cmd_env()
    env.post("DEFER_REBOOT", "60")
    wait_until(lambda: done(log_output, "DEFER_REBOOT"))
    assert done(log_output, "DEFER_REBOOT")[0]["ok"] is False
    assert any(e["event"] == "reboot_not_pending" for e in log_output)
    assert env.kills.calls == []


def test_a_plugin_power_backend_wins_over_the_demo_one(cmd_env):
    actions = []
    env = cmd_env(extra_plugins=[_board(actions)])
    env.post("POWEROFF_DEVICE", "now")
    wait_until(lambda: actions)
    assert actions == [("poweroff", "now")]
    assert env.kills.calls == []


def test_system_backend_runs_the_system_commands(cmd_env):
    env = cmd_env(start=False, power_backend="system")
    calls = []

    def run(argv, **kwargs):
        calls.append(argv)
        return SimpleNamespace(returncode=1 if argv == ["poweroff"] else 0)

    backend = env.core.hook.pv_commands_power_backend(core=env.core)
    assert isinstance(backend, SystemPower)
    backend = SystemPower(env.core, run=run)
    backend.reboot("r")
    backend.poweroff("p")
    assert calls == [["reboot"], ["poweroff"]]
    assert env.engine.stops == 2
    # a failed poweroff ends the shutdown activity again
    assert env.device.activity == [("shutdown", True), ("shutdown", True), ("shutdown", False)]


def test_system_backend_survives_a_missing_binary(cmd_env):
    env = cmd_env(start=False)

    def run(argv, **kwargs):
        raise FileNotFoundError(argv[0])

    SystemPower(env.core, run=run).reboot("r")
    assert env.device.activity[-1] == ("shutdown", False)


def test_unknown_power_backend_fails_the_boot(make_core):
    import pv_commands
    from pvcore.errors import StartupError

    with pytest.raises(StartupError, match="power_backend"):
        make_core(plugins=[pv_commands], overrides={"power_backend": "magic"})


def test_hook_failure_is_logged_not_fatal(cmd_env, log_output):
    class Broken:
        @hookimpl
        def pv_commands_run(self, core, op, payload):
            if op == "XCONNECT_GRAPH":
                raise RuntimeError("boom")

    env = cmd_env(extra_plugins=[Broken()])
    env.post("XCONNECT_GRAPH")
    wait_until(lambda: done(log_output, "XCONNECT_GRAPH"))
    assert done(log_output, "XCONNECT_GRAPH")[0]["ok"] is False
    assert any(e["event"] == "command_failed" for e in log_output)
    # the slot is free again
    wait_until(lambda: env.post("RUN_GC").status_code == 200)


def test_a_full_disk_fails_a_command_without_a_traceback(cmd_env, log_output):
    import errno

    class Full:
        @hookimpl
        def pv_commands_run(self, core, op, payload):
            if op == "XCONNECT_GRAPH":
                raise OSError(errno.ENOSPC, "No space left on device")

    env = cmd_env(extra_plugins=[Full()])
    env.post("XCONNECT_GRAPH")
    wait_until(lambda: done(log_output, "XCONNECT_GRAPH"))
    failed = [e for e in log_output if e["event"] == "command_failed"]
    assert failed and failed[0]["log_level"] == "error" and "No space left" in failed[0]["error"]
    assert "exc_info" not in failed[0] and "exception" not in failed[0]


def test_subprocess_errors_are_caught(cmd_env):
    env = cmd_env(start=False)

    def run(argv, **kwargs):
        raise subprocess.TimeoutExpired(argv, 60)

    SystemPower(env.core, run=run).poweroff("p")
    assert env.device.activity[-1] == ("shutdown", False)


def _board(actions):
    class Board:
        def reboot(self, message):
            actions.append(("reboot", message))

        def poweroff(self, message):
            actions.append(("poweroff", message))

    class BoardPlugin:
        @hookimpl
        def pv_commands_power_backend(self, core):
            return Board()

    return BoardPlugin()


def test_a_dead_platform_reboots_a_real_device(cmd_env):
    actions = []
    env = cmd_env(extra_plugins=[_board(actions)])
    env.core.publish("container.status", "pvr-sdk", {"old": "READY", "new": "STOPPED", "platform_failed": True})
    wait_until(lambda: actions)
    assert actions == [("reboot", "Platform container pvr-sdk failed")]


def test_a_stopped_container_or_the_demo_device_does_not_reboot(cmd_env):
    actions = []
    env = cmd_env(extra_plugins=[_board(actions)])
    env.core.publish("container.status", "app", {"old": "READY", "new": "STOPPED"})
    demo = cmd_env()
    demo.core.publish("container.status", "pvr-sdk", {"old": "READY", "new": "STOPPED", "platform_failed": True})
    time.sleep(0.3)
    assert actions == [] and demo.kills.calls == []


def test_an_unclaim_recorded_by_an_earlier_release_in_cache_is_kept(make_core, tmp_path):
    """Upgrade: the marker moved from ``<storage>/cache/`` to pv_commands' data_dir."""
    import pv_commands
    from pv_commands import device

    storage = str(tmp_path / "storage")
    os.makedirs(os.path.join(storage, "cache"))
    open(os.path.join(storage, "cache", "pvcore-unclaimed"), "w").close()
    core = make_core(plugins=[pv_commands], overrides={"storage_dir": storage, "claimed": True})
    assert not device.is_claimed(core)
    assert os.listdir(os.path.join(storage, "cache")) == []
    assert os.path.exists(os.path.join(storage, "pvcore", "pv_commands", "unclaimed"))
