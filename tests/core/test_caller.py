"""Caller identification from cgroups (docs/protocol.md, "Callers")."""
import os

import pytest

from pvcore import hookimpl
from pvcore.caller import HOST, name_from_cgroup


@pytest.mark.parametrize(
    "text,expected",
    [
        ("12:name=pantavisor:/lxc/pvr-sdk\n0::/lxc/pvr-sdk\n", "pvr-sdk"),
        ("12:name=pantavisor:/\n", HOST),
        ("12:name=pantavisor:/my-app\n", "my-app"),
        ("0::/lxc/my-app\n", "my-app"),
        ("0::/lxc/my-app/sub\n", "my-app/sub"),
        # the v2 root is the host only when configured (caller_host_cgroups=/)
        ("0::/\n", None),
        ("0::/..\n", None),
        ("0::/user.slice/session-1.scope\n", None),
    ],
)
def test_names_from_cgroup_files(text, expected):
    assert name_from_cgroup(text) == expected


def test_prefixes_of_pv_are_not_the_host():
    # upstream would take "_p" for the host; only the exact root is here
    assert name_from_cgroup("12:name=pantavisor:/lxc/_p\n") == "_p"


def test_this_process_resolves_through_the_hook(make_core):
    core = make_core()
    assert core.hook.pvcore_identify_caller(core=core, pid=os.getpid()) == HOST
    assert core.hook.pvcore_identify_caller(core=core, pid=2 ** 22 + 17) is None


def test_callers_are_remembered_per_connection_until_the_device_changes(make_core):
    import socket as socketlib

    from pvcore.caller import identify

    calls = []

    class Resolver:
        @hookimpl(tryfirst=True)
        def pvcore_identify_caller(self, core, pid):
            calls.append(pid)
            return "app"

        @hookimpl
        def pvcore_caller_roles(self, core, name):
            return ["mgmt"]

    core = make_core(plugins=[Resolver()])
    left, right = socketlib.socketpair(socketlib.AF_UNIX)
    try:
        environ = {"gunicorn.socket": left}
        assert identify(core, environ).name == "app"
        assert identify(core, environ).name == "app"
        assert len(calls) == 1
        core.publish("container.status", "app", {"old": "STARTED", "new": "STOPPING", "rev": "0"})
        assert identify(core, environ).name == "app"
        assert len(calls) == 2
    finally:
        left.close()
        right.close()


# -- every observation must agree (docs/architecture.md §6) ---------------------


class Reported:
    """A running caller ``app`` with the given cgroups and leader pid."""

    def __init__(self, cgroups, leader=None):
        self.cgroups, self.leader = cgroups, leader

    @hookimpl
    def pvcore_caller_cgroups(self, core):
        return {"app": self.cgroups}

    @hookimpl
    def pvcore_caller_leaders(self, core):
        return {"app": self.leader} if self.leader else {}


def _own_lines():
    with open("/proc/self/cgroup") as fh:
        return [":".join(line.split(":", 2)[1:]) for line in fh.read().splitlines()]


def test_a_caller_is_named_only_when_every_reported_cgroup_holds_the_peer(make_core):
    from pvcore.caller import confirm

    core = make_core(plugins=[Reported(_own_lines())])
    assert core.hook.pvcore_identify_caller(core=core, pid=os.getpid()) == "app"
    assert confirm(core, os.getpid(), "app") == "app"
    # this process is in app's cgroups: it is not the host, nor another caller
    assert confirm(core, os.getpid(), HOST) == ""
    assert confirm(core, os.getpid(), "other") == ""


def test_one_matching_hierarchy_out_of_two_is_no_proof(make_core):
    from pvcore.caller import confirm

    forged = _own_lines()[:1] + ["freezer:/somewhere/else/entirely"]
    core = make_core(plugins=[Reported(forged)])
    assert core.hook.pvcore_identify_caller(core=core, pid=os.getpid()) == ""
    assert confirm(core, os.getpid(), "app") == ""


def _in_new_pid_namespace():
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a new pid namespace needs root and unshare(1)")
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "sleep", "30"])
    from pvcore.testing import wait_until

    def child():
        try:
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as fh:
                pids = [int(p) for p in fh.read().split()]
        except OSError:
            return None
        return pids[0] if pids else None

    return proc, wait_until(child, 5, message="the sleep in its own pid namespace")


def test_a_peer_in_another_pid_namespace_is_never_the_host(make_core):
    from pvcore.caller import confirm

    core = make_core()
    proc, pid = _in_new_pid_namespace()
    try:
        # root, pvcore's cgroups, descendant of this process: all "host" — but not its pid namespace
        assert core.hook.pvcore_identify_caller(core=core, pid=pid) == ""
        assert confirm(core, pid, HOST) == ""
    finally:
        proc.kill()
        proc.wait()


def test_a_leaders_pid_namespace_and_those_below_it_are_its_callers(make_core):
    from pvcore.caller import confirm

    proc, pid = _in_new_pid_namespace()
    try:
        core = make_core(plugins=[Reported([], leader=pid)])
        assert core.hook.pvcore_identify_caller(core=core, pid=pid) == "app"
        # ...and this process, outside that namespace, is not app (nor, claimed by nobody, unknown as app)
        assert confirm(core, os.getpid(), "app") == ""
        assert confirm(core, os.getpid(), HOST) == HOST
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "start-time"])
def test_a_connection_whose_peer_exited_is_no_longer_its_peers(tmp_path, monkeypatch, pidfd):
    import socket
    import subprocess
    import sys

    from pvcore import caller

    if not pidfd:  # a kernel without SO_PEERPIDFD: the start time pins the peer
        monkeypatch.setattr(caller, "_SO_PEERPIDFD", -1)
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(1)
        child = subprocess.Popen([sys.executable, "-c", "import socket, sys; s = socket.socket(socket.AF_UNIX); "
                                  "s.connect(sys.argv[1]); sys.stdin.read()", path], stdin=subprocess.PIPE)
        sock, _ = listener.accept()
        with sock:
            cache = caller.CallerCache()
            assert cache.same_peer(sock, child.pid)
            assert not cache.same_peer(sock, child.pid + 1)
            child.communicate(b"")
            assert not cache.same_peer(sock, child.pid)
