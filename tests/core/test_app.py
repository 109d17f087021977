"""The core's routing, access control and error rendering, in-process."""
import json
import os

import falcon
import pytest

from pvcore import hookimpl
from pvcore.app import StashKey, build_core, requires_mgmt, takes_query
from pvcore.errors import NotFound, StartupError
from pvcore.plugins import get_plugin_manager
from pvcore.settings import Setting, Settings


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


class Tail:
    @takes_query("tail")
    def on_get(self, req, resp, key):
        resp.data = b'{"key":"%s","tail":"%s"}' % (key.encode(), req.params.get("tail", "").encode())


class RoutesPlugin:
    @hookimpl
    def pvcore_routes(self, core):
        return [
            ("/echo", Echo()),
            ("/items/{key}", Missing()),
            ("/tails/{key}", Tail()),
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


@pytest.mark.parametrize("query", ["b", "b=1", "tail=1"])
def test_a_query_string_on_a_name_is_refused_not_cut(client, query):
    resp = client().simulate_get("/items/a", query_string=query)
    assert resp.status_code == 400
    assert resp.text == '{"Error":"Request has a query string or fragment in a name"}'


def test_a_query_string_on_an_exact_route_is_ignored_as_upstream(client):
    assert client().simulate_get("/echo", query_string="x=1").status_code == 200


def test_a_route_that_takes_query_parameters_gets_them_and_refuses_others(client):
    assert client().simulate_get("/tails/a", query_string="tail=5").text == '{"key":"a","tail":"5"}'
    assert client().simulate_get("/tails/a").status_code == 200
    resp = client().simulate_get("/tails/a", query_string="tail=5&head=1")
    assert resp.status_code == 400
    assert resp.text == '{"Error":"Request has an unknown query parameter"}'


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


# -- boot errors: one line naming the plugin (docs/plugins.md, "Boot errors") --


def _boot_error(make_core, plugin, name="broken"):
    with pytest.raises(StartupError) as info:
        make_core(plugins=[(name, plugin)])
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_startup_hook_that_raises_is_named_in_one_line(make_core, log_output):
    class Broken:
        @hookimpl
        def pvcore_startup(self, core):
            raise KeyError("missing")

    message = _boot_error(make_core, Broken())
    assert message == "plugin broken (not installed): pvcore_startup raised: KeyError: 'missing'"
    (event,) = [e for e in log_output if e["event"] == "plugin_boot_error"]
    assert event["log_level"] == "debug" and event["exc_info"]


def test_a_startup_error_the_plugin_raises_keeps_its_message(make_core):
    class Picky:
        @hookimpl
        def pvcore_startup(self, core):
            raise StartupError("widget_mode must be a or b")

    assert _boot_error(make_core, Picky()).endswith("pvcore_startup raised: widget_mode must be a or b")


@pytest.mark.parametrize("answer, complaint", [
    (("/x", Echo()), "is not (uri_template, resource[, options])"),
    ("/x", "must return a list"),
    ([("/x",)], "is not (uri_template, resource[, options])"),
    ([("x", Echo())], "must be a string starting with '/'"),
    ([("/x", Echo(), {"sufix": "a"})], "options may only be"),
    ([("/x", Echo)], "must be an instance"),
    ([("/x", object())], "has no responder"),
])
def test_a_malformed_routes_answer_names_the_plugin(make_core, answer, complaint):
    class Routes:
        @hookimpl
        def pvcore_routes(self, core):
            return answer

    message = _boot_error(make_core, Routes())
    assert "broken (not installed)" in message and complaint in message


def test_a_routes_hook_that_raises_names_the_plugin(make_core):
    class Routes:
        @hookimpl
        def pvcore_routes(self, core):
            return [("/x", core.stash["nothing"])]

    assert _boot_error(make_core, Routes()).startswith("plugin broken (not installed): pvcore_routes raised: KeyError")


def test_a_route_falcon_refuses_names_the_plugin(make_core):
    class Routes:
        @hookimpl
        def pvcore_routes(self, core):
            return [("/x/{not-a-field}", Echo())]

    assert _boot_error(make_core, Routes()).startswith("plugin broken (not installed): route /x/{not-a-field}")


@pytest.mark.parametrize("answer, complaint", [
    ("widgets", "must return a list of Setting"),
    (["widgets"], "not a pvcore.settings.Setting"),
])
def test_malformed_settings_name_the_plugin(make_core, answer, complaint):
    class Settings_:
        @hookimpl
        def pvcore_declare_settings(self):
            return answer

    message = _boot_error(make_core, Settings_())
    assert message.startswith("plugin broken (not installed)") and complaint in message


class Widgets:
    @hookimpl
    def pvcore_declare_settings(self):
        return [Setting("widgets", int, 1, "How many.")]


def test_a_plugin_setting_with_a_bad_value_names_the_plugin(tmp_path):
    pm = get_plugin_manager(load_entrypoints=False, plugins=[("widgets", Widgets())])
    settings = Settings({"storage_dir": str(tmp_path / "s"), "run_dir": str(tmp_path / "r")},
                        env={"PVCORE_WIDGETS": "many"})
    with pytest.raises(StartupError) as info:
        build_core(settings, pm)
    assert str(info.value).startswith("plugin widgets (not installed): settings: PVCORE_WIDGETS='many'")


def test_a_settings_file_line_nobody_declared_fails_the_boot(tmp_path):
    (tmp_path / "pvcore.conf").write_text("widgets = 3\nwidgetz = 4\n")
    pm = get_plugin_manager(load_entrypoints=False, plugins=[("widgets", Widgets())])
    settings = Settings({"storage_dir": str(tmp_path / "s"), "run_dir": str(tmp_path / "r")}, env={},
                        file=str(tmp_path / "pvcore.conf"))
    with pytest.raises(StartupError, match=r"pvcore.conf:2: unknown setting 'widgetz'"):
        build_core(settings, pm)


@pytest.mark.parametrize("services, complaint", [
    ([object()], "has no start()"),
    ("svc", "has no start()"),
])
def test_malformed_services_name_the_plugin_at_start(make_core, services, complaint):
    class Services:
        @hookimpl
        def pvcore_services(self, core):
            return services

    core = make_core(plugins=[("broken", Services())])
    with pytest.raises(StartupError) as info:
        core.start()
    assert str(info.value).startswith("plugin broken (not installed): pvcore_services: ")
    assert complaint in str(info.value)
    assert not core.started


# -- who may call: mgmt per method (docs/plugins.md, "Who may call") --


class Notes:
    """GET for every container, PUT for mgmt only, DELETE by a responder attribute."""

    mgmt = {"GET": False, "PUT": True}

    def on_get(self, req, resp):
        resp.data = b"{}"

    def on_put(self, req, resp):
        resp.data = b"{}"

    @requires_mgmt(False)
    def on_delete(self, req, resp):
        resp.data = b"{}"

    def on_post(self, req, resp):  # left out of the mapping: mgmt
        resp.data = b"{}"


class NotesPlugin:
    @hookimpl
    def pvcore_routes(self, core):
        return [("/notes", Notes())]


@pytest.mark.parametrize("method, app_status", [("GET", 200), ("PUT", 403), ("DELETE", 200), ("POST", 403)])
def test_mgmt_can_differ_per_method_on_one_resource(make_core, make_client, method, app_status):
    core = make_core(plugins=[NotesPlugin(), Containers()], overrides={"caller_fallback": ""})
    assert make_client(core, APP).simulate_request(method, "/notes").status_code == app_status
    assert make_client(core, SDK).simulate_request(method, "/notes").status_code == 200
    assert core.routes["/notes"].needs_mgmt(method) is (app_status == 403)


@pytest.mark.parametrize("value", [{"GET": "no"}, {"PATCH": False}, "no"])
def test_a_malformed_mgmt_fails_the_boot_naming_the_plugin(make_core, value):
    class Bad:
        mgmt = value

        def on_get(self, req, resp):
            pass

    class Routes:
        @hookimpl
        def pvcore_routes(self, core):
            return [("/bad", Bad())]

    message = _boot_error(make_core, Routes())
    assert message.startswith("plugin broken (not installed): route /bad: ") and "mgmt" in message


# -- where a plugin keeps files (docs/plugins.md) --


def test_each_plugin_gets_its_own_storage_folder(make_core):
    core = make_core()
    path = core.data_dir("pv_notes")
    assert path == os.path.join(core.settings.storage_dir, "pvcore", "pv_notes")
    assert os.path.isdir(path) and os.stat(path).st_mode & 0o777 == 0o700
    assert core.data_dir("pv_notes") == path
    assert core.data_dir("pvcore_sampler") != path


@pytest.mark.parametrize("name", ["", "..", "a/b", "../etc", ".hidden"])
def test_a_storage_folder_needs_a_plain_name(make_core, name):
    with pytest.raises(ValueError):
        make_core().data_dir(name)
