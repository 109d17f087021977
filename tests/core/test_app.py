"""The core's routing, access control and error rendering, in-process."""
import json
import os

import falcon
import pytest

from pvcore import hookimpl
from pvcore.app import StashKey
from pvcore.errors import NotFound, StartupError


class Echo:
    """A GET+PUT route, mgmt only."""

    def on_get(self, req, resp):
        resp.data = b'{"caller":"%s"}' % req.context.caller.name.encode()

    def on_put(self, req, resp):
        resp.content_type = falcon.MEDIA_JSON


class Open:
    mgmt = False

    def on_post(self, req, resp):
        resp.content_type = falcon.MEDIA_JSON


class Boom:
    def on_get(self, req, resp):
        raise RuntimeError("kaboom")


class Missing:
    def on_get(self, req, resp, key):
        raise NotFound("Thing does not exist")


class RoutesPlugin:
    @hookimpl
    def pvcore_routes(self, core):
        return [
            ("/echo", Echo()),
            ("/items/{key}", Missing()),
            ("/open", Open()),
            ("/boom", Boom()),
        ]


#: Fake peer pids beyond Linux's pid_max, so no real process (the test runner
#: included) can ever be one of them.
APP, SDK, GHOST, NO_SUCH_PID = (2 ** 22 + n for n in (1, 2, 3, 17))


class Containers:
    """Callers: APP is container 'app' (no mgmt), SDK is 'sdk' (mgmt), GHOST
    names a container that does not exist, NO_SUCH_PID cannot be identified,
    and the test process is the host (whatever cgroup the runner is in)."""

    names = {APP: "app", SDK: "sdk", GHOST: "ghost", os.getpid(): "_pv_"}

    @hookimpl(tryfirst=True)
    def pvcore_identify_caller(self, core, pid):
        return self.names.get(pid)

    @hookimpl
    def pvcore_caller_roles(self, core, name):
        return {"app": [], "sdk": ["mgmt"]}.get(name)


@pytest.fixture
def client(make_core, make_client):
    core = make_core(plugins=[RoutesPlugin(), Containers()])
    return lambda pid=None: make_client(core, pid)


def test_host_caller_is_privileged(client):
    resp = client().simulate_get("/echo")
    assert resp.status_code == 200
    assert resp.json == {"caller": "_pv_"} or resp.text == '{"caller":"_pv_"}'


def test_unknown_path_is_400_with_the_raw_uri(client):
    resp = client().simulate_get("/nope")
    assert resp.status_code == 400
    assert resp.text == '{"Error":"unknown endpoint: /nope"}'
    assert resp.headers["content-type"] == "application/json"


def test_trailing_slash_is_significant(client):
    assert client().simulate_get("/echo/").status_code == 400


def test_wrong_method_on_exact_route(client):
    resp = client().simulate_post("/echo")
    assert resp.status_code == 400
    assert resp.text == '{"Error":"Method not supported for this endpoint"}'


def test_head_on_a_get_route_is_not_supported(client):
    assert client().simulate_head("/echo").status_code == 400


def test_unlisted_http_method_is_a_framework_501(client):
    resp = client().simulate_request("PATCH", "/echo")
    assert resp.status_code == 501
    assert resp.text == '{"Error": "Unsupported protocol"}'
    assert client().simulate_request("PATCH", "/nope").status_code == 501


@pytest.mark.parametrize("pid", [None, APP])
def test_unlisted_http_method_on_a_templated_route_is_the_routers_400(client, pid):
    resp = client(pid).simulate_request("PATCH", "/items/x")
    assert resp.status_code == 400
    assert resp.text == '{"Error":"Method not supported for this endpoint"}'
    assert client(NO_SUCH_PID).simulate_request("OPTIONS", "/items/x").status_code == 500


@pytest.mark.parametrize(
    "path,message",
    [("/echo", "Request not sent from a mgmt platform"), ("/items/x", "Request not sent from mgmt platform")],
)
def test_non_mgmt_container_gets_the_contract_403(client, path, message):
    resp = client(APP).simulate_get(path)
    assert resp.status_code == 403
    assert resp.text == json.dumps({"Error": message}, separators=(",", ":"))


def test_non_mgmt_container_may_call_open_routes(client):
    assert client(APP).simulate_post("/open").status_code == 200


def test_mgmt_container_is_served(client):
    resp = client(SDK).simulate_get("/echo")
    assert resp.text == '{"caller":"sdk"}'


@pytest.mark.parametrize("pid", [GHOST, NO_SUCH_PID])
def test_unknown_caller_gets_500(client, pid):
    exact = client(pid).simulate_get("/echo")
    templated = client(pid).simulate_get("/items/x")
    assert (exact.status_code, exact.text) == (500, '{"Error":"Internal Error"}')
    assert (templated.status_code, templated.text) == (500, '{"Error":"Internal error, unknown caller"}')


def test_unknown_caller_is_checked_before_the_method(client):
    assert client(NO_SUCH_PID).simulate_delete("/echo").status_code == 500


def test_plugin_errors_render_compact_json(client):
    resp = client().simulate_get("/items/x")
    assert resp.status_code == 404
    assert resp.text == '{"Error":"Thing does not exist"}'


def test_uncaught_exception_is_one_log_event_and_a_json_500(client, log_output):
    resp = client().simulate_get("/boom")
    assert resp.status_code == 500
    assert resp.text == '{"Error":"Internal error"}'
    events = [e for e in log_output if e["event"] == "unhandled_error"]
    assert len(events) == 1
    assert events[0]["path"] == "/boom"


def test_request_id_header_is_set(client):
    resp = client().simulate_get("/echo")
    assert resp.headers["x-request-id"]


def test_request_id_header_is_set_on_errors_and_echoes_the_clients(client):
    assert client().simulate_get("/nope").headers["x-request-id"]
    resp = client().simulate_get("/boom", headers={"X-Request-ID": "mine-1"})
    assert resp.status_code == 500 and resp.headers["x-request-id"] == "mine-1"


def test_two_plugins_claiming_one_route_fail_the_boot_naming_both(make_core):
    class Other:
        @hookimpl
        def pvcore_routes(self, core):
            return [("/echo", Echo())]

    with pytest.raises(StartupError) as info:
        make_core(plugins=[("first", RoutesPlugin()), ("second", Other())])
    assert "GET /echo" in str(info.value)
    assert "first" in str(info.value) and "second" in str(info.value)


def test_plugins_may_share_a_path_with_different_methods(make_core, make_client):
    class Deleter:
        def on_delete(self, req, resp, key):
            resp.content_type = falcon.MEDIA_JSON
            resp.data = key.encode()

    class Other:
        @hookimpl
        def pvcore_routes(self, core):
            return [("/items/{key}", Deleter())]

    core = make_core(plugins=[RoutesPlugin(), Other()])
    client = make_client(core)
    assert client.simulate_delete("/items/abc").text == "abc"
    assert client.simulate_get("/items/abc").status_code == 404


def test_same_shape_with_other_field_names_fails_the_boot(make_core):
    class Other:
        @hookimpl
        def pvcore_routes(self, core):
            return [("/items/{name}", Missing())]

    with pytest.raises(StartupError, match="same shape"):
        make_core(plugins=[RoutesPlugin(), Other()])


def test_plugins_keep_state_in_the_stash(make_core, make_client):
    COUNTER = StashKey()

    class Counter:
        @hookimpl
        def pvcore_startup(self, core):
            core.stash[COUNTER] = {"hits": 0}

        @hookimpl
        def pvcore_routes(self, core):
            state = core.stash[COUNTER]

            class Hit:
                def on_post(self, req, resp):
                    state["hits"] += 1
                    resp.data = str(state["hits"]).encode()

            return [("/hit", Hit())]

    core = make_core(plugins=[Counter()])
    client = make_client(core)
    client.simulate_post("/hit")
    assert client.simulate_post("/hit").text == "2"
    assert core.stash[COUNTER]["hits"] == 2


def test_build_starts_no_thread_and_no_process(make_core):
    import threading

    before = threading.active_count()
    children_before = open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read()
    make_core(load_entrypoints=True)
    assert threading.active_count() == before
    assert open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read() == children_before
