"""Black-box: ops carried out by the daemons, config and metadata plugins, on the demo device."""
import json
import os
import time

import pytest

from pvcore.testing import wait_until

from commands_helpers import command, get

pytestmark = pytest.mark.gunicorn


def ssh(server):
    return next(d for d in get(server, "/daemons") if d["name"] == "ssh")


def test_enable_and_disable_ssh(start_gunicorn):
    server = start_gunicorn(demo=True)
    assert ssh(server)["pid"] <= 0
    assert command(server, "ENABLE_SSH")[0] == 200
    wait_until(lambda: ssh(server)["pid"] > 0 and ssh(server)["respawn"], message="ssh to start")
    entry = next(e for e in get(server, "/config2") if e["key"] == "PV_DEBUG_SSH")
    assert (entry["value"], entry["modified"]) == ("1", "command")
    wait_until(lambda: command(server, "DISABLE_SSH")[0] == 200)
    wait_until(lambda: ssh(server)["pid"] <= 0 and not ssh(server)["respawn"], message="ssh to stop")
    entry = next(e for e in get(server, "/config2") if e["key"] == "PV_DEBUG_SSH")
    assert (entry["value"], entry["modified"]) == ("0", "command")


def test_update_metadata_is_refused_in_local_mode_and_recorded_in_remote_mode(start_gunicorn):
    server = start_gunicorn(demo=True, env={"PV_CONTROL_REMOTE": "1"})
    wait_until(lambda: get(server, "/device-meta").get("pantavisor.mode") == "local")
    status, _, body = command(server, "UPDATE_METADATA", {"site": "lab"})
    assert (status, json.loads(body)) == (409, {"Error": "Cannot do this operation while on local mode"})
    assert "site" not in get(server, "/device-meta")
    pending = os.path.join(server.storage_dir, "pvcore", "pv_metadata", "pending-devmeta.jsonl")
    assert not os.path.exists(pending)
    assert command(server, "GO_REMOTE")[0] == 200
    wait_until(lambda: get(server, "/device-meta").get("pantavisor.mode") == "remote")
    wait_until(lambda: command(server, "UPDATE_METADATA", {"site": "lab"})[0] == 200, message="the slot to free")
    wait_until(lambda: get(server, "/device-meta").get("site") == "lab")
    with open(pending) as fh:
        assert [json.loads(line)["key"] for line in fh] == ["site"]


def test_go_remote(start_gunicorn):
    server = start_gunicorn(demo=True, env={"PV_CONTROL_REMOTE": "1"})
    assert command(server, "GO_REMOTE")[0] == 200
    wait_until(lambda: get(server, "/device-meta").get("pantavisor.mode") == "remote")
    wait_until(lambda: command(server, "GO_REMOTE")[0] == 204)


def test_config_refusals(start_gunicorn):
    server = start_gunicorn(demo=True, env={"PV_CONTROL_REMOTE": "0", "PV_DEBUG_SHELL": "0"})
    status, _, body = command(server, "GO_REMOTE")
    assert (status, json.loads(body)) == (409, {"Error": "Cannot do this operation when remote mode is disabled by config"})
    status, _, body = command(server, "DEFER_REBOOT", "60")
    assert (status, json.loads(body)) == (409, {"Error": "Cannot do this operation when debug shell is not active"})


def test_device_meta_keeps_the_mode_and_claim_pv_commands_publishes(start_gunicorn):
    """One writer per device-meta key: the periodic refresh (every 0.1 s here)
    never writes ``pantavisor.mode`` or ``pantahub.claimed`` over pv_commands'
    state (docs/architecture.md §2)."""
    server = start_gunicorn(demo=True, env={"PVCORE_CLAIMED": "1", "PVCORE_DEVMETA_REFRESH": "0.1"})
    wait_until(lambda: get(server, "/device-meta").get("pantahub.claimed") == "1")
    assert command(server, "GO_REMOTE")[0] == 200
    wait_until(lambda: get(server, "/device-meta").get("pantavisor.mode") == "remote")
    time.sleep(1.0)  # ten refreshes
    meta = get(server, "/device-meta")
    assert (meta["pantavisor.mode"], meta["pantahub.claimed"]) == ("remote", "1")
    assert command(server, "UNCLAIM")[0] == 200
    wait_until(lambda: get(server, "/device-meta").get("pantahub.claimed") == "0")
