"""Access control: 0660 socket, 403 on every mgmt endpoint for a non-mgmt container,
``/signal`` open to it, 500 for a caller nobody can identify (docs/protocol.md §4, §6)."""
import json
import os
import stat

import pytest

from pvcore import hookimpl
from pvcore_demo import seed
from pvcore.testing import short_tempdir, wait_until, write_revision
from reliability_helpers import all_ready, start_server, stop_server

USER_PID, MGMT_PID, UNKNOWN_PID = 4_100_001, 4_100_002, 4_100_003
SHA = "a" * 64

#: docs/protocol.md §6, every mgmt path and method (exact routes first, then templated ones).
EXACT = [
    ("GET", "/containers"), ("GET", "/groups"), ("GET", "/daemons"), ("POST", "/commands"),
    ("POST", "/storage/gc"), ("GET", "/objects"), ("GET", "/steps"), ("GET", "/user-meta"),
    ("GET", "/device-meta"), ("GET", "/config"), ("GET", "/config2"), ("GET", "/xconnect-graph"),
    ("GET", "/buildinfo"), ("GET", "/drivers"), ("PUT", "/drivers/load"), ("PUT", "/drivers/unload"),
    ("GET", "/wakelocks"),
]
TEMPLATED = [
    ("PUT", "/containers/pv-example-unix-server"), ("PUT", "/daemons/pv-xconnect"),
    ("GET", f"/objects/{SHA}"), ("PUT", f"/objects/{SHA}"),
    ("GET", "/steps/0"), ("GET", "/steps/locals/x"), ("PUT", "/steps/locals/x"),
    ("GET", "/steps/0/progress"), ("GET", "/steps/locals/x/progress"),
    ("PUT", "/steps/0/commitmsg"), ("PUT", "/steps/locals/x/commitmsg"),
    ("PUT", "/user-meta/k"), ("DELETE", "/user-meta/k"), ("PUT", "/device-meta/k"), ("DELETE", "/device-meta/k"),
    ("PUT", "/drivers/wifi/load"), ("PUT", "/drivers/wifi/unload"),
]
EXACT_403 = b'{"Error":"Request not sent from a mgmt platform"}'
TEMPLATED_403 = b'{"Error":"Request not sent from mgmt platform"}'
BODY = b'{"action":"stop","op":"RUN_GC","payload":""}'


def served(core, routes):
    """The listed exact routes the installed plugins serve (``/commands`` arrives with pv_commands)."""
    return [(m, p) for m, p in routes if p in core.routes]


class FakeCallers:
    """Maps pretend pids to demo containers; ``UNKNOWN_PID`` resolves to a name with no roles."""

    @hookimpl(tryfirst=True)
    def pvcore_identify_caller(self, core, pid):
        return {USER_PID: "pv-example-unix-client", MGMT_PID: "pv-example-unix-server",
                UNKNOWN_PID: "ghost"}.get(pid)

    @hookimpl(tryfirst=True)
    def pvcore_caller_roles(self, core, name):
        if name == "ghost":
            return None  # a name no container owns: unidentifiable
        return {"pv-example-unix-client": [], "pv-example-unix-server": ["mgmt"]}.get(name)


@pytest.fixture(name="device")
def _device(make_core):
    core = make_core(load_entrypoints=True)
    seed(core)
    return make_core(load_entrypoints=True, plugins=[FakeCallers()], overrides={
        "storage_dir": core.settings.storage_dir, "run_dir": core.settings.run_dir})


def test_every_mgmt_route_is_403_for_a_non_mgmt_container(device, make_client):
    client = make_client(device, pid=USER_PID)
    for method, path in served(device, EXACT):
        r = client.simulate_request(method, path, body=BODY)
        assert (r.status_code, r.content) == (403, EXACT_403), (method, path, r.content)
    for method, path in TEMPLATED:
        r = client.simulate_request(method, path, body=BODY)
        assert (r.status_code, r.content) == (403, TEMPLATED_403), (method, path, r.content)
    # nothing happened: the meta key is not there, for the host either
    assert make_client(device).simulate_get("/user-meta").content == b"{}"


def test_the_route_table_holds_no_mgmt_route_the_list_misses(device):
    """A new endpoint must join the lists above (only /signal and pvcore's own extras are open)."""
    listed = {p for _, p in EXACT} | {"/signal"}
    shapes = {tuple("{}" if s.startswith("{") or s in (SHA, "pv-example-unix-server", "pv-xconnect", "0", "x", "k",
                                                    "wifi") else s for s in p.split("/")) for _, p in TEMPLATED}
    for template, route in device.routes.items():
        if template.startswith("/_pvcore"):
            continue
        shape = tuple("{}" if s.startswith("{") else s for s in template.split("/"))
        if route.templated:
            assert shape in shapes, template
        else:
            assert template in listed, template
        for method in route.methods:
            assert route.needs_mgmt(method) == (template != "/signal"), (template, method)


def test_signal_works_for_the_non_mgmt_container(device, make_client):
    import pv_containers
    assert device.stash[pv_containers.ENGINE].loaded
    r = make_client(device, pid=USER_PID).simulate_post("/signal", body=b'{"type":"ready","payload":""}')
    # not a 403: it reached the signal handler (the container is not running here, so not expected)
    assert r.status_code != 403
    assert (r.status_code, r.content) in ((200, b""), (500, b'{"Error":"Signal not expected from this platform"}'))
    assert make_client(device, pid=MGMT_PID).simulate_get("/containers").status_code == 200


def test_unidentifiable_caller_gets_500(device, make_client):
    client = make_client(device, pid=UNKNOWN_PID)
    for method, path in served(device, EXACT) + [("POST", "/signal")]:
        r = client.simulate_request(method, path, body=BODY)
        assert (r.status_code, r.content) == (500, b'{"Error":"Internal Error"}'), (method, path)
    for method, path in TEMPLATED:
        r = client.simulate_request(method, path, body=BODY)
        assert (r.status_code, r.content) == (500, b'{"Error":"Internal error, unknown caller"}'), (method, path)


PROBE = r'''
import json, os, socket, sys, time

def call(method, path, body=b""):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(os.environ["PVCORE_CTRL_SOCKET"])
        sock.sendall(b"%s %s HTTP/1.0\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n%s"
                     % (method.encode(), path.encode(), len(body), body))
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return [int(head.split()[1]), payload.decode()]

routes = json.loads(sys.argv[2])
result = {"signal": None, "routes": []}
for _ in range(200):
    result["signal"] = call("POST", "/signal", b'{"type":"ready","payload":""}')
    if result["signal"][0] == 200:
        break
    time.sleep(0.05)
for method, path in routes:
    result["routes"].append([method, path] + call(method, path, b'{"action":"stop","op":"RUN_GC","payload":""}'))
path = os.path.join(sys.argv[1], "result")
with open(path + ".tmp", "w") as fh:
    json.dump(result, fh)
os.rename(path + ".tmp", path)
while True:
    time.sleep(1)
'''


@pytest.mark.gunicorn
def test_over_the_socket_from_inside_a_non_mgmt_container(device):
    base = short_tempdir("pvacc")
    out = os.path.join(base, "out")
    os.makedirs(out)
    routes = served(device, EXACT) + TEMPLATED
    run = {"#spec": "service-manifest-run@1", "name": "probe-user", "type": "lxc", "group": "app",
           "status_goal": "READY", "restart_policy": "container", "roles": [],
           "exec": ["{python}", "-c", PROBE, out, json.dumps(routes)]}
    write_revision(os.path.join(base, "storage"), {"#spec": "pantavisor-service-system@1", "probe-user/run.json": run})
    server = start_server(demo=False, base=base)
    try:
        mode = stat.S_IMODE(os.stat(server.socket).st_mode)
        assert mode == 0o660, oct(mode)
        wait_until(lambda: all_ready(server), 30, message="probe READY")
        path = os.path.join(out, "result")
        result = wait_until(lambda: os.path.exists(path) and json.load(open(path)), 30, message="probe result")
        assert result["signal"] == [200, ""]
        expected = [[m, p, 403, (EXACT_403 if (m, p) in EXACT else TEMPLATED_403).decode()] for m, p in routes]
        assert result["routes"] == expected
    finally:
        stop_server(server)
