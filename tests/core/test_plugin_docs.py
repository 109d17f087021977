"""The examples of docs/plugins.md run: each ``# docs example: <file>`` block is
written out as that file and used as a plugin author would."""
import os
import re
import sys

import pytest

from pvcore.testing import ContainerCaller, wait_until

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "plugins.md")
BLOCK = re.compile(r"```python\n# docs example: (\S+)\n(.*?)```", re.S)


def examples():
    with open(DOC) as fh:
        return {path: code for path, code in BLOCK.findall(fh.read())}


@pytest.fixture
def docs_examples(tmp_path, monkeypatch):
    """Writes every example under ``tmp_path`` (importable) and imports by name."""
    for path, code in examples().items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    names = {path.split("/")[0].removesuffix(".py") for path in examples()}
    yield tmp_path
    for name in list(sys.modules):
        if name.split(".")[0] in names:
            del sys.modules[name]


def test_the_documented_examples_are_the_ones_tested():
    assert set(examples()) == {"pvcore_whoami.py", "pvcore_greeter/hookspecs.py", "pvcore_greeter/__init__.py",
                               "pvcore_polite.py", "pvcore_heartbeat/__init__.py", "pvcore_heartbeat/daemon.py",
                               "pvcore_ports.py"}


def test_a_contract_of_ones_own_with_pvcore_hookspec(docs_examples, make_core, make_client):
    import pvcore_greeter
    import pvcore_polite

    alone = make_core(plugins=[("pvcore_greeter", pvcore_greeter)])
    assert make_client(alone).simulate_get("/greeter/ann").json == {"greeting": "hello, ann"}
    both = make_core(plugins=[("pvcore_greeter", pvcore_greeter), ("pvcore_polite", pvcore_polite)])
    assert make_client(both).simulate_get("/greeter/ann").json == {"greeting": "good morning, ann"}
    make_core(plugins=[("pvcore_polite", pvcore_polite)])  # its owner absent: still boots


def test_req_context_caller_fields(docs_examples, make_core, make_client):
    import pvcore_whoami

    host = make_client(make_core(plugins=[pvcore_whoami])).simulate_get("/whoami").json
    assert host == {"name": "_pv_", "pid": os.getpid(), "roles": ["mgmt"], "privileged": True, "host": True}
    app = make_client(make_core(plugins=[pvcore_whoami, ContainerCaller("app", roles=[])]))
    assert app.simulate_get("/whoami").json == {"name": "app", "pid": os.getpid(), "roles": [],
                                                "privileged": False, "host": False}


def test_a_crashed_container_frees_what_a_listener_held(docs_examples, make_core):
    import pvcore_ports

    core = make_core(plugins=[pvcore_ports])
    core.publish("container.status", "web", {"old": "STARTING", "new": "STARTED", "rev": "0"})
    assert core.stash[pvcore_ports.PORTS] == {"web": 9000}
    core.publish("container.status", "web", {"old": "STARTED", "new": "RECOVERING", "rev": "0"})
    assert core.stash[pvcore_ports.PORTS] == {}


@pytest.mark.gunicorn
def test_a_daemon_reaches_the_socket(docs_examples, start_gunicorn):
    """Installed as a third party would be: a distribution with a pvcore entry point."""
    dist = docs_examples / "pvcore_heartbeat-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pvcore-heartbeat\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[pvcore]\npvcore_heartbeat = pvcore_heartbeat\n")
    path = os.pathsep.join([str(docs_examples), os.environ.get("PYTHONPATH", "")])
    server = start_gunicorn(env={"PYTHONPATH": path, "HEARTBEAT_INTERVAL": "0.2"}, plugins=["pvcore_heartbeat"])

    def beat():
        status, _, body = server.request("GET", "/user-meta")
        return status == 200 and b"heartbeat" in body

    wait_until(beat, timeout=15, message="the daemon's PUT /user-meta/heartbeat")
    status, _, body = server.request("GET", "/daemons")
    assert b'"heartbeat"' in body
