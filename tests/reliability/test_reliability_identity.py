"""A container process that escapes its process tree stays its container's.

The probe is a non-mgmt container whose init forks a child that calls
``setsid()`` and forks again; the grandchild, re-parented away from the
init, execs a fresh interpreter with an *empty* environment (no tag left)
and asks for a mgmt-only ``PUT /user-meta/escape``. It must get the 403 its
container gets, and it must not outlive its container: not a stop through
the API, not a switch to another revision, not a ``kill -9`` of the worker
(after the next start), not a SIGTERM of pvcore. Each case runs with
cgroups (``PVCORE_CGROUPS=auto``, where this machine lets pvcore create them)
and with the process-tree fallback (``off``, as on a non-root laptop).
"""
import glob
import json
import os
import signal

import pytest

from pvcore.cgroups import CgroupTree
from pvcore.testing import short_tempdir, wait_until, write_revision
from reliability_helpers import alive, all_ready, get_json, kill_worker, start_server, stop_server

TEMPLATED_403 = [403, '{"Error":"Request not sent from mgmt platform"}']

ESCAPED = r'''
import json, os, socket, sys, time
out, sock_path = sys.argv[1], sys.argv[2]

def call(method, path, body=b""):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(sock_path)
        sock.sendall(b"%s %s HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (method.encode(), path.encode(), len(body), body))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return [int(head.split()[1]), payload.decode()]

with open(f"/proc/self/cgroup") as fh:
    cgroup = fh.read()
doc = {"pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0), "environ": dict(os.environ),
       "cgroup": cgroup, "put": call("PUT", "/user-meta/escape", b"yes")}
path = os.path.join(out, "escaped-%d" % os.getpid())
with open(path + ".tmp", "w") as fh:
    json.dump(doc, fh)
os.rename(path + ".tmp", path)
while True:
    time.sleep(1)
'''

PROBE = r'''
import os, sys, time
out, escaped = sys.argv[1], sys.argv[2]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execve(sys.executable, [sys.executable, "-c", escaped, out, os.environ["PVCORE_CTRL_SOCKET"]], {})
    os._exit(0)
os.wait()
while True:
    time.sleep(1)
'''


def _probe(out, *extra):
    return {"#spec": "service-manifest-run@1", "name": "probe", "type": "lxc", "group": "app",
            "status_goal": "STARTED", "restart_policy": "container", "roles": [],
            "exec": ["{python}", "-c", PROBE, out, ESCAPED, *extra]}


class Probe:
    def __init__(self, mode):
        self.base = short_tempdir("pvid")
        self.out = os.path.join(self.base, "out")
        os.makedirs(self.out)
        self.seen = set()
        write_revision(os.path.join(self.base, "storage"),
                       {"#spec": "pantavisor-service-system@1", "probe/run.json": _probe(self.out)})
        self.mode = mode
        self.server = start_server({"PVCORE_CGROUPS": mode}, demo=False, base=self.base)

    def escape(self):
        """The next escaped grandchild's report (it asked for the mgmt-only PUT)."""
        def new():
            fresh = [p for p in glob.glob(os.path.join(self.out, "escaped-*")) if not p.endswith(".tmp")
                     and p not in self.seen]
            return fresh[0] if fresh else None
        path = wait_until(new, 30, message="an escaped probe process")
        self.seen.add(path)
        with open(path) as fh:
            doc = json.load(fh)
        assert not [k for k in doc["environ"] if k.startswith("PVCORE")], doc["environ"]
        assert alive(doc["pid"])
        assert doc["put"] == TEMPLATED_403, doc
        assert "escape" not in get_json(self.server, "/user-meta")
        tree = self.tree()
        if tree is not None:  # it runs in its container's cgroup
            assert f"{tree.controllers}:{tree.base}/probe\n" in doc["cgroup"], doc["cgroup"]
        return doc["pid"]

    def tree(self):
        """The server's container cgroup tree, or ``None`` (fallback mode)."""
        if self.mode == "off":
            return None
        events = [e for e in self.server.log_events() if e.get("event") == "containment"]
        if not events or not events[-1].get("cgroups"):
            return None
        # CgroupTree('<mount>', '<controllers>', '<base>')
        return eval(events[-1]["cgroups"], {"CgroupTree": CgroupTree})

    def control(self, action):
        status, _, body = self.server.request("PUT", "/containers/probe", json.dumps({"action": action}))
        assert status == 200, body


def _gone(pid, timeout=15):
    wait_until(lambda: not alive(pid), timeout, message=f"escaped process {pid} to end")


@pytest.fixture(name="probe", params=["auto", "off"])
def _probe_device(request):
    probe = Probe(request.param)
    yield probe
    stop_server(probe.server)


def test_escaped_process_is_refused_and_ends_with_its_container(probe):
    pid = probe.escape()
    probe.control("stop")
    _gone(pid)
    wait_until(lambda: get_json(probe.server, "/containers")[0]["status"] == "STOPPED", 15)

    probe.control("start")
    pid = probe.escape()
    kill_worker(probe.server)
    _gone(pid)  # the new worker killed it before starting the container again

    pid = probe.escape()
    state = get_json(probe.server, "/steps/current")
    state["probe/run.json"] = _probe(probe.out, "next")
    assert probe.server.request("PUT", "/steps/locals/next", json.dumps(state))[0] == 200
    status, _, body = probe.server.request("POST", "/commands", json.dumps({"op": "LOCAL_RUN", "payload": "locals/next"}))
    assert status == 200, body
    _gone(pid, 30)  # the switch stopped the old probe

    pid = probe.escape()  # the new revision's probe
    wait_until(lambda: all_ready(probe.server), 30)
    assert probe.server.stop() == 0
    _gone(pid)


def test_unknown_processes_are_not_the_host(probe):
    """A process of pvcore's container cgroup tree or carrying a container's tag, outside any
    running container, is unknown (500), not the host."""
    pid = probe.escape()
    probe.control("stop")
    _gone(pid)
    # the runner itself is the host (its uid is pvcore's): mgmt endpoints answer
    status, _, _ = probe.server.request("GET", "/containers")
    assert status == 200


def test_no_cgroup_is_left_after_a_stop(probe):
    tree = probe.tree()
    if tree is None:
        pytest.skip("no cgroups (fallback mode, or pvcore cannot create them here)")
    pid = probe.escape()
    assert os.listdir(os.path.join(tree.mount, tree.base.lstrip("/")))
    assert probe.server.stop() == 0
    _gone(pid)
    assert not os.path.exists(os.path.join(tree.mount, tree.base.lstrip("/")))
