"""Black-box ``/xconnect-graph`` over a real gunicorn on the demo device (seed test 21).

The running revision's state comes from the storage plugin and the pids from
the container engine. Where those families are not installed yet, the
endpoint must answer the contract's 500 (no state) or report pid -1.
"""
import json

import pytest

from pvcore_demo import CLIENT, SERVER, SERVICE
from pvcore.testing import wait_until

pytestmark = pytest.mark.gunicorn


def implementers(server, hook):
    status, plugins = server.client().json("GET", "/_pvcore/plugins")
    assert status == 200
    return [plugin["name"] for plugin in plugins if hook in plugin["hooks"]]


def graph(server):
    status, headers, body = server.request("GET", "/xconnect-graph")
    return status, headers["Content-Type"], body


def test_seed_21_demo_graph_has_the_unix_link(start_gunicorn):
    server = start_gunicorn(demo=True)
    if not implementers(server, "pv_steps_revision"):
        assert graph(server) == (500, "application/json", b'{"Error":"State not loaded yet"}')
        return
    engine = implementers(server, "pv_containers_pids")

    def linked():
        status, ctype, body = graph(server)
        assert (status, ctype) == (200, "application/json")
        links = json.loads(body)
        return links if not engine or all(l["consumer_pid"] > 0 and l["provider_pid"] > 0 for l in links) else None

    (link,) = wait_until(linked, timeout=20, message="the demo containers' pids in the graph")
    assert (link["provider"], link["consumer"], link["name"], link["type"]) == (SERVER, CLIENT, SERVICE, "unix")
    assert (link["role"], link["interface"]) == ("any", "unix")
    assert link["target"] == "/run/pv/services/pv-example-unix.sock"
    assert link["socket"] == "/run/example/unix.sock"
    if not engine:
        assert (link["consumer_pid"], link["provider_pid"]) == (-1, -1)
