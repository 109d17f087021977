import pv_buildinfo


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
    from pvcore import hookimpl

    class Caller:
        @hookimpl(tryfirst=True)
        def pvcore_identify_caller(self, core, pid):
            return "app"

        @hookimpl
        def pvcore_caller_roles(self, core, name):
            return []

    core = make_core(plugins=[pv_buildinfo, Caller()])
    resp = make_client(core).simulate_get("/buildinfo")
    assert resp.status_code == 403
    assert resp.text == '{"Error":"Request not sent from a mgmt platform"}'
