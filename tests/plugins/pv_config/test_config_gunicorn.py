"""Black-box configuration tests over a real gunicorn on the demo device (seed test 7)."""
import pytest

pytestmark = pytest.mark.gunicorn


def rows(conn):
    status, doc = conn.json("GET", "/config2")
    assert status == 200
    return {row["key"]: (row["value"], row["modified"]) for row in doc}


def test_seed_7_config_and_user_meta_override(start_gunicorn):
    server = start_gunicorn(demo=True, env={"PV_LOG_LEVEL": "4", "PH_CREDS_SECRET": "s3cret"})
    conn = server.client()
    status, headers, body = conn.call("GET", "/config")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert b"s3cret" not in body
    status, doc = conn.json("GET", "/config")
    assert doc["system.init.mode"] == 2
    assert doc["log.level"] == 4
    assert doc["creds.secret"] == "********"
    full = rows(conn)
    assert full["PV_SYSTEM_INIT_MODE"] == ("appengine", "default")
    assert full["PV_LOG_LEVEL"] == ("4", "env")
    assert full["PH_CREDS_SECRET"] == ("********", "env")

    assert conn.call("PUT", "/user-meta/log.level", b"5")[0] == 200
    assert rows(conn)["PV_LOG_LEVEL"] == ("5", "metadata")
    assert conn.json("GET", "/config")[1]["log.level"] == 5
    assert conn.call("DELETE", "/user-meta/log.level")[0] == 200
    assert rows(conn)["PV_LOG_LEVEL"] == ("4", "env")


def test_user_meta_override_is_applied_again_after_a_restart(start_gunicorn):
    server = start_gunicorn(demo=True)
    assert server.request("PUT", "/user-meta/PV_REVISION_RETRIES", b"3")[0] == 200
    server.stop()
    server.start()
    conn = server.client()
    assert rows(conn)["PV_REVISION_RETRIES"] == ("3", "metadata")
    assert conn.json("GET", "/config")[1]["revision.retries"] == 3
