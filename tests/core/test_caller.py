"""Caller identification from cgroups (contract §4.1)."""
import os

import pytest

from pvcore.caller import HOST, name_from_cgroup


@pytest.mark.parametrize(
    "text,expected",
    [
        ("12:name=pantavisor:/lxc/pvr-sdk\n0::/lxc/pvr-sdk\n", "pvr-sdk"),
        ("12:name=pantavisor:/\n", HOST),
        ("12:name=pantavisor:/my-app\n", "my-app"),
        ("0::/lxc/my-app\n", "my-app"),
        ("0::/lxc/my-app/sub\n", "my-app/sub"),
        ("0::/\n", HOST),
        ("0::/..\n", HOST),
    ],
)
def test_names_from_cgroup_files(text, expected):
    assert name_from_cgroup(text, fallback="") == expected


def test_unrelated_cgroup_uses_the_fallback():
    assert name_from_cgroup("0::/user.slice/session-1.scope\n", fallback=HOST) == HOST
    assert name_from_cgroup("0::/user.slice/session-1.scope\n", fallback="") is None


def test_prefixes_of_pv_are_not_the_host():
    # upstream §12.13: "_p" would pass as the host; only the exact root does here
    assert name_from_cgroup("12:name=pantavisor:/lxc/_p\n", fallback="") == "_p"


def test_this_process_resolves_through_the_hook(make_core):
    core = make_core()
    assert core.hook.pvcore_identify_caller(core=core, pid=os.getpid()) == HOST
    assert core.hook.pvcore_identify_caller(core=core, pid=2 ** 22 + 17) is None
