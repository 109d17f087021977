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
