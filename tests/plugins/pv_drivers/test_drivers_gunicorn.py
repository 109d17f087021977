"""Black-box: /drivers on a real gunicorn serving the demo device.

The demo's only container with drivers is ``pv-example-unix-client`` (manual
``wifi``). A real test process is the host ``_pv_`` there, so the second test
installs a tiny extra plugin (through a temporary ``*.dist-info`` on
``PYTHONPATH``, the way any third-party plugin is found) that identifies this
test process as that container with the mgmt role, and supplies the demo
revision state when no storage plugin does.
"""
import json
import os
import textwrap

import pytest

pytestmark = pytest.mark.gunicorn

CONTAINER = "pv-example-unix-client"

FAKE_PLUGIN = textwrap.dedent('''
    import os
    from pvcore import hookimpl
    from pvcore_demo import demo_state

    def _pid():
        return int(os.environ["PVTEST_CALLER_PID"])

    @hookimpl(tryfirst=True)
    def pvcore_identify_caller(core, pid):
        return "%s" if pid == _pid() else None

    @hookimpl(tryfirst=True)
    def pvcore_caller_roles(core, name):
        return ["mgmt"] if name == "%s" else None

    @hookimpl(trylast=True)
    def pv_steps_revision(core, rev):
        from pv_steps.model import build

        return build("0", demo_state()[0]) if rev == "current" else None
''' % (CONTAINER, CONTAINER))


def dry_run_log(server):
    path = os.path.join(server.run_dir, "drivers-dryrun.log")
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh]


def test_host_caller_has_no_drivers(start_gunicorn):
    server = start_gunicorn(demo=True)
    status, _, body = server.request("GET", "/drivers")
    assert (status, body) == (200, b"{}")
    for path in ("/drivers/load", "/drivers/unload"):
        status, _, body = server.request("PUT", path)
        assert (status, body) == (200, b"")
    status, _, body = server.request("PUT", "/drivers/wifi/load")
    assert status == 404 and json.loads(body) == {"Error": "Driver not found"}
    status, _, body = server.request("PUT", "/drivers/load/load")
    assert status == 400 and json.loads(body) == {"Error": "No driver name"}
    assert dry_run_log(server) == []


@pytest.fixture
def fake_plugin_path(tmp_path):
    (tmp_path / "pvtest_fake_device.py").write_text(FAKE_PLUGIN)
    dist = tmp_path / "pvtest_fake_device-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pvtest-fake-device\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[pvcore]\npvtest_fake_device = pvtest_fake_device\n")
    return str(tmp_path)


def test_container_caller_loads_and_unloads_manual_drivers(start_gunicorn, fake_plugin_path):
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [fake_plugin_path, os.environ.get("PYTHONPATH")])),
           "PVTEST_CALLER_PID": str(os.getpid())}
    server = start_gunicorn(demo=True, env=env, plugins=["pvtest_fake_device"])
    conn = server.client()

    # The metadata plugin may or may not be installed: substitute what it holds.
    status, _, _ = conn.call("PUT", "/user-meta/wifi.opts", b"roamoff=1")
    opts = ["roamoff=1"] if status == 200 else []

    assert conn.json("GET", "/drivers") == (200, [{"name": "wifi", "type": "MANUAL", "status": "UNLOADED"}])
    assert conn.call("PUT", "/drivers/load")[0] == 200
    assert conn.json("GET", "/drivers") == (200, [{"name": "wifi", "type": "MANUAL", "status": "LOADED"}])
    assert [e["argv"] for e in dry_run_log(server)] == [["modprobe", "cfg80211"], ["modprobe", "brcmfmac", *opts]]

    assert conn.call("PUT", "/drivers/unload")[0] == 200
    assert conn.json("GET", "/drivers")[1][0]["status"] == "UNLOADED"
    assert [e["argv"] for e in dry_run_log(server)][2:] == [["modprobe", "-r", "brcmfmac"],
                                                           ["modprobe", "-r", "cfg80211"]]

    assert conn.call("PUT", "/drivers/wifi/load")[0] == 200
    assert conn.json("GET", "/drivers")[1][0]["status"] == "LOADED"
    status, _, body = conn.call("PUT", "/drivers/usb-serial/load")
    assert status == 404 and json.loads(body) == {"Error": "Driver not found"}
    assert len(dry_run_log(server)) == 6
    conn.close()
