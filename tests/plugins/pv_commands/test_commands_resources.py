"""POST /commands: every HTTP answer of the admission path (docs/protocol.md §7.6)."""
import threading

import pytest

import pv_commands
from pvcore.testing import wait_until

BAD = {"Error": "Command has bad format"}


def raw_post(env, body):
    return env.client.simulate_post("/commands", body=body)


@pytest.mark.parametrize("body", [
    b"",
    b"not json",
    b"[]",
    b'{"payload": ""}',
    b'{"op": "RUN_GC"}',
    b'{"op": 5, "payload": ""}',
    b'{"op": "RUN_GC", "payload": 5}',
    b'{"op": "RUN_GC", "payload": null}',
    b'{"op": "NOPE", "payload": ""}',
    b'{"op": "LOCAL", "payload": "0"}',
    b'{"op": "", "payload": "{\\"a\\":\\"b\\"}"}',
    b'{"op": "run_gc", "payload": ""}',
    b'{"op": "RUN_GC", "op": "RUN_GC", "payload": ""}',
    b'{"op": "LOCAL_RUN", "payload": ""}',
    b'{"op": "DEFER_REBOOT", "payload": "soon"}',
    b'{"op": "DEFER_REBOOT", "payload": "0"}',
    b'{"op": "UPDATE_METADATA", "payload": "not an object"}',
    b'{"op": "UPDATE_METADATA", "payload": 3}',
    b'{"op": "UPDATE_METADATA", "payload": {}}',
    b'{"op": "UPDATE_METADATA", "payload": "[1]"}',
])
def test_bad_format(cmd_env, body):
    env = cmd_env(start=False)
    resp = raw_post(env, body)
    assert resp.status_code == 400
    assert resp.json == BAD
    assert resp.headers["content-type"] == "application/json"


def test_body_over_limit_is_507_and_at_limit_is_accepted(cmd_env):
    env = cmd_env(start=False)
    head = b'{"op": "RUN_GC", "payload": "'
    tail = b'"}'
    at_limit = head + b"x" * (4096 - len(head) - len(tail)) + tail
    assert len(at_limit) == 4096
    over = raw_post(env, at_limit + b" ")
    assert over.status_code == 507
    assert over.json == {"Error": "Not enough disk space available"}
    ok = raw_post(env, at_limit)
    assert ok.status_code == 200


def test_accepted_is_200_empty_json(cmd_env):
    env = cmd_env(start=False)
    resp = env.post("RUN_GC")
    assert resp.status_code == 200
    assert resp.content == b""
    assert resp.headers["content-type"] == "application/json"


@pytest.mark.parametrize("payload", [{"k": "v"}, '{"k": "v"}'])
def test_update_metadata_takes_object_or_string_holding_one(cmd_env, payload):
    env = cmd_env(start=False)
    env.core.stash[pv_commands.STATE].remote = True
    assert env.post("UPDATE_METADATA", payload).status_code == 200


def test_second_command_while_one_is_pending_is_503_retry_120(cmd_env, log_output):
    env = cmd_env(start=False)  # no worker: the first command stays in the slot
    assert env.post("RUN_GC").status_code == 200
    resp = env.post("ENABLE_SSH")
    assert resp.status_code == 503
    assert resp.json == {"Error": "A command is already in progress. Try again"}
    assert resp.headers["retry-after"] == "120"
    assert any(e["event"] == "command_rejected" and e["status"] == 503 for e in log_output)


def test_busy_while_transition_runs(cmd_env):
    env = cmd_env()
    env.engine.gate = threading.Event()
    try:
        assert env.post("LOCAL_RUN", "locals/x").status_code == 200
        assert env.engine.running.wait(5)
        for op in ("LOCAL_RUN", "LOCAL_RUN_COMMIT", "TRY_ONCE", "LOCAL_APPLY", "MAKE_FACTORY",
                   "REBOOT_DEVICE", "POWEROFF_DEVICE"):
            resp = env.post(op, "locals/x")
            assert resp.status_code == 503, op
            assert resp.json == {"Error": "Cannot do this operation while update is ongoing"}
            assert resp.headers["retry-after"] == "600"
        resp = env.post("RUN_GC")
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == "120"
    finally:
        env.engine.gate.set()
    wait_until(lambda: env.storage.last_status("locals/x") == "UPDATED")
    assert env.post("LOCAL_RUN", "0").status_code == 200
    # Its transition ends inside the test, not in the teardown's logs.
    wait_until(lambda: env.storage.last_status("0") in ("UPDATED", "DONE"))


def test_testing_phase_blocks_transitions_but_frees_the_slot(cmd_env):
    env = cmd_env(update_commit_delay=30.0)
    assert env.post("LOCAL_RUN", "locals/x").status_code == 200
    wait_until(lambda: env.storage.last_status("locals/x") == "TESTING")
    wait_until(lambda: env.core.stash[pv_commands.STATE].slot is None)
    resp = env.post("LOCAL_RUN", "0")
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "600"
    assert env.post("RUN_GC").status_code == 200
    wait_until(lambda: env.storage.gc_in_use is not None)
    assert "locals/x" in env.storage.gc_in_use


def test_make_factory_on_claimed_device_is_409(cmd_env):
    env = cmd_env(start=False, claimed=True)
    resp = env.post("MAKE_FACTORY", "")
    assert resp.status_code == 409
    assert resp.json == {"Error": "Cannot do this operation if device is already claimed"}


def test_unclaim_when_unclaimed_is_204(cmd_env):
    env = cmd_env(start=False)
    resp = env.post("UNCLAIM")
    assert resp.status_code == 204
    assert resp.content == b""


def test_unclaim_then_make_factory_is_allowed(cmd_env):
    env = cmd_env(claimed=True)
    assert env.post("UNCLAIM").status_code == 200
    wait_until(lambda: env.device.meta_calls[-1:] == [("pantahub.claimed", "0")])
    wait_until(lambda: env.post("MAKE_FACTORY", "locals/x").status_code == 200)
    assert env.post("UNCLAIM").status_code in (204, 503)


def test_go_remote_disabled_by_config_is_409(cmd_env):
    env = cmd_env(start=False)
    env.device.config["PV_CONTROL_REMOTE"] = "0"
    resp = env.post("GO_REMOTE")
    assert resp.status_code == 409
    assert resp.json == {"Error": "Cannot do this operation when remote mode is disabled by config"}


def test_go_remote_then_already_remote_is_204(cmd_env):
    env = cmd_env()  # no Hub: the device starts local
    assert env.post("GO_REMOTE").status_code == 200
    wait_until(lambda: env.device.device_meta.get("pantavisor.mode") == "remote")
    wait_until(lambda: env.post("GO_REMOTE").status_code == 204)


def test_running_a_local_revision_goes_back_to_local_mode(cmd_env):
    env = cmd_env()
    env.post("GO_REMOTE")
    wait_until(lambda: env.device.device_meta.get("pantavisor.mode") == "remote")
    wait_until(lambda: env.post("LOCAL_RUN", "locals/x").status_code == 200)
    wait_until(lambda: env.device.device_meta.get("pantavisor.mode") == "local")
    wait_until(lambda: env.post("GO_REMOTE").status_code == 200)


def test_remote_always_keeps_remote_mode(cmd_env):
    env = cmd_env()
    env.device.config["PV_CONTROL_REMOTE_ALWAYS"] = True
    env.post("GO_REMOTE")
    wait_until(lambda: env.device.device_meta.get("pantavisor.mode") == "remote")
    wait_until(lambda: env.post("LOCAL_RUN", "locals/x").status_code == 200)
    wait_until(lambda: env.storage.last_status("locals/x") == "UPDATED")
    assert env.device.device_meta["pantavisor.mode"] == "remote"
    assert env.post("GO_REMOTE").status_code == 204


def test_defer_reboot_without_debug_shell_is_409(cmd_env):
    env = cmd_env(start=False)
    env.device.config["PV_DEBUG_SHELL"] = False
    resp = env.post("DEFER_REBOOT", "60")
    assert resp.status_code == 409
    assert resp.json == {"Error": "Cannot do this operation when debug shell is not active"}


def test_update_metadata_in_local_mode_is_409(cmd_env):
    env = cmd_env()
    resp = env.post("UPDATE_METADATA", {"k": "v"})
    assert (resp.status_code, resp.json) == (409, {"Error": "Cannot do this operation while on local mode"})
    assert env.device.commands == []
    # a malformed one is still 400 first
    assert env.post("UPDATE_METADATA", {}).status_code == 400


def test_wrong_method_is_400(cmd_env):
    env = cmd_env(start=False)
    resp = env.client.simulate_get("/commands")
    assert resp.status_code == 400
    assert resp.json == {"Error": "Method not supported for this endpoint"}


def test_accepted_command_is_logged(cmd_env, log_output):
    env = cmd_env(start=False)
    env.post("XCONNECT_GRAPH")
    accepted = [e for e in log_output if e["event"] == "command_accepted"]
    assert [(e["op"], e["payload"]) for e in accepted] == [("XCONNECT_GRAPH", "")]
