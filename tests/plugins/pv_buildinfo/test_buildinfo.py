import pytest

import pv_buildinfo
from pvcore.testing import ContainerCaller


def test_manifest_is_served_as_text(make_core, make_client):
    core = make_core(plugins=[pv_buildinfo], overrides={"buildinfo": "pantavisor 029\nmeta-pantavisor abc\n"})
    resp = make_client(core).simulate_get("/buildinfo")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text == "pantavisor 029\nmeta-pantavisor abc\n"


def test_empty_manifest_by_default(make_core, make_client):
    resp = make_client(make_core(plugins=[pv_buildinfo])).simulate_get("/buildinfo")
    assert (resp.status_code, resp.text) == (200, "")


def test_buildinfo_is_mgmt_only(make_core, make_client):
    core = make_core(plugins=[pv_buildinfo, ContainerCaller("app", roles=[])])
    resp = make_client(core).simulate_get("/buildinfo")
    assert resp.status_code == 403
    assert resp.text == '{"Error":"Request not sent from a mgmt platform"}'


@pytest.mark.gunicorn
def test_the_demo_device_answers_the_readmes_first_command_with_its_manifest(demo_device):
    status, headers, body = demo_device.request("GET", "/buildinfo")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert body.startswith(b"pvcore ") and b"\n  pv_buildinfo (pvcore " in body
