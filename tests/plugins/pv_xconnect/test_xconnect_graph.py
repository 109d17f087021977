"""The xconnect graph: the pure builder and the endpoint over fake state/engine plugins."""
import pytest

import pv_xconnect
from pv_steps.model import build
from pv_xconnect.graph import build_graph
from pvcore import hookimpl
from pvcore_demo import CLIENT, SERVER, demo_state


def graph_of(state, pids=None):
    """The graph of ``state`` through its revision model, as the endpoint builds it."""
    return build_graph(build("0", state), pids)


def run(name, required=(), optional=()):
    return {"name": name, "services": {"required": list(required), "optional": list(optional)}}


# docs/protocol.md §D8: net-server exports two services, app-client needs one and optionally the other.
STATE = {
    "#spec": "pantavisor-service-system@1",
    "app-client/run.json": run("app-client",
                               required=[{"name": "net-api", "type": "unix",
                                          "target": "/run/pv/services/net-api.sock"}],
                               optional=[{"name": "net-rest", "type": "rest", "role": "admin",
                                          "interface": "org.example.Rest", "target": "/run/pv/services/rest.sock"}]),
    "bsp/run.json": {"linux": "kernel.img"},
    "net-server/run.json": run("net-server"),
    "net-server/services.json": {
        "#spec": "service-manifest-xconnect@1",
        "services": [{"name": "net-api", "type": "unix", "socket": "/run/net/api.sock"},
                     {"name": "net-rest", "type": "rest", "socket": "/run/net/rest.sock"},
                     {"type": "dbus", "bus": "system-bus", "owns": "org.x.Name"}],
    },
}


def test_links_follow_device_model_8_3():
    links = graph_of(STATE, {"app-client": 1234, "net-server": 987})
    assert links == [
        {"consumer": "app-client", "consumer_pid": 1234, "provider": "net-server", "provider_pid": 987,
         "name": "net-api", "type": "unix", "role": "any", "interface": "unix",
         "target": "/run/pv/services/net-api.sock", "socket": "/run/net/api.sock"},
        {"consumer": "app-client", "consumer_pid": 1234, "provider": "net-server", "provider_pid": 987,
         "name": "net-rest", "type": "rest", "role": "admin", "interface": "org.example.Rest",
         "target": "/run/pv/services/rest.sock", "socket": "/run/net/rest.sock"},
    ]
    assert list(links[0]) == ["consumer", "consumer_pid", "provider", "provider_pid", "name", "type", "role",
                              "interface", "target", "socket"]


def test_unknown_pids_are_minus_one_and_missing_target_is_null():
    state = {"c/run.json": run("c", required=[{"name": "svc"}]),
             "p/run.json": run("p"), "p/services.json": [{"name": "svc", "type": "weird", "socket": "/s"}]}
    (link,) = graph_of(state, {"c": None})
    assert (link["consumer_pid"], link["provider_pid"]) == (-1, -1)
    assert (link["type"], link["interface"], link["target"]) == ("unknown", "unknown", None)


def test_every_provider_of_a_name_is_linked_including_the_consumer_itself():
    state = {"a/run.json": run("a", required=[{"name": "svc"}]),
             "a/services.json": [{"name": "svc", "type": "unix", "socket": "/a"}],
             "b/run.json": run("b"), "b/services.json": {"services": [{"name": "svc", "type": "rest", "socket": "/b"}]}}
    assert [(l["provider"], l["type"]) for l in graph_of(state)] == [("a", "unix"), ("b", "rest")]


def test_no_requirements_or_no_providers_give_no_links():
    assert graph_of({"p/run.json": run("p"), "p/services.json": [{"name": "x", "type": "unix"}]}) == []
    assert graph_of({"c/run.json": run("c", required=[{"name": "x"}])}) == []
    assert graph_of({}) == []


def test_malformed_manifests_are_skipped():
    state = {"c/run.json": {"services": {"required": [7, {"name": 1}, {"name": "ok"}], "optional": "ok2"}},
             "p/run.json": {"name": "p"},
             "p/services.json": [None, {"name": "ok", "type": "unix", "socket": "/p"},
                                 {"name": "ok2", "type": "drm", "socket": "/q"}],
             "q/services.json": {"services": "nope"}}
    assert [(l["name"], l["type"]) for l in graph_of(state)] == [("ok", "unix"), ("ok2", "drm")]
    # a run.json that is not an object is no container, for the graph as for the engine
    state["p/run.json"] = "not an object"
    assert graph_of(state) == []


def test_demo_device_has_one_unix_link():
    state, _ = demo_state()
    (link,) = graph_of(state, {SERVER: 11, CLIENT: 22})
    assert link["provider"] == SERVER and link["consumer"] == CLIENT
    assert (link["type"], link["provider_pid"], link["consumer_pid"]) == ("unix", 11, 22)
    assert link["socket"] == "/run/example/unix.sock"


class FakeRuntime:
    """Stands in for the storage plugin (the revision model) and the engine (pids)."""

    def __init__(self, state, pids=None):
        self.state = state
        self.pids = pids
        self.asked = []

    @hookimpl
    def pv_steps_revision(self, core, rev):
        self.asked.append(rev)
        return build("0", self.state) if self.state is not None else None

    @hookimpl
    def pv_containers_pids(self, core):
        return self.pids


@pytest.fixture
def client_for(make_core, make_client):
    def client_for(runtime=None):
        plugins = [pv_xconnect] + ([runtime] if runtime else [])
        return make_client(make_core(plugins=plugins))

    return client_for


def test_endpoint_serves_the_running_revision_graph(client_for):
    runtime = FakeRuntime(STATE, {"app-client": 5, "net-server": 6})
    resp = client_for(runtime).simulate_get("/xconnect-graph")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    assert resp.json == graph_of(STATE, {"app-client": 5, "net-server": 6})
    assert runtime.asked == ["current"]


def test_endpoint_without_links_is_an_empty_array(client_for):
    resp = client_for(FakeRuntime({"x/run.json": run("x")})).simulate_get("/xconnect-graph")
    assert (resp.status_code, resp.text) == (200, "[]")


@pytest.mark.parametrize("runtime", [None, FakeRuntime(None)])
def test_endpoint_without_state_is_500(client_for, runtime):
    resp = client_for(runtime).simulate_get("/xconnect-graph")
    assert (resp.status_code, resp.text) == (500, '{"Error":"State not loaded yet"}')


def test_endpoint_without_an_engine_reports_minus_one(client_for):
    resp = client_for(FakeRuntime(demo_state()[0])).simulate_get("/xconnect-graph")
    assert [(l["consumer_pid"], l["provider_pid"]) for l in resp.json] == [(-1, -1)]
