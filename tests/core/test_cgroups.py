"""pvcore.cgroups: naming cgroups as /proc/<pid>/cgroup does, and the tree pvcore owns."""
import os
import sys

import pytest

from pvcore.cgroups import CgroupRef, CgroupTree, parse_membership
from pvcore.supervisor import ProcessGroups, process_running
from pvcore.testing import wait_until

HYBRID = "9:name=systemd:/\n6:freezer:/pvcore/ab/web\n4:cpu,cpuacct:/x\n0::/pvcore/ab/web/sub\n"


def test_membership_and_refs():
    membership = parse_membership(HYBRID)
    assert ("freezer", "/pvcore/ab/web") in membership
    assert CgroupRef.parse(":/pvcore/ab/web").holds(membership)  # a sub-cgroup counts
    assert CgroupRef.parse("freezer:/pvcore/ab/web").holds(membership)
    assert CgroupRef.parse("cpuacct,cpu:/x").holds(membership)
    assert not CgroupRef.parse(":/pvcore/ab/we").holds(membership)  # not a path prefix
    assert not CgroupRef.parse("freezer:/pvcore/ab/web2").holds(membership)
    assert str(CgroupRef("", "/a")) == ":/a"


ESCAPE = ("import os, time\n"
          "if os.fork() == 0:\n"
          "    os.setsid()\n"
          "    if os.fork() == 0:\n"
          "        time.sleep(300)\n"
          "    os._exit(0)\n"
          "os.wait()\n"
          "time.sleep(300)\n")


def _escaped(leader, token):
    def find():
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != leader.pid:
                try:
                    with open(f"/proc/{entry}/environ", "rb") as fh:
                        env = fh.read()
                    if token.encode() in env.split(b"\0") and os.getsid(int(entry)) != leader.pid:
                        return int(entry)
                except OSError:
                    pass
        return None
    return find


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_a_contained_child_ends_whole(tmp_path, mode):
    groups = ProcessGroups(str(tmp_path / "pg"), cgroups=mode)
    tree = groups.open()
    if mode == "auto" and tree is None:
        pytest.skip("pvcore cannot create cgroups here")
    token = f"PVTEST_TOKEN={tmp_path}"
    env = dict(os.environ, PVTEST_TOKEN=str(tmp_path))
    proc = groups.spawn("c", [sys.executable, "-c", ESCAPE], env=env, contain="web")
    escaped = wait_until(_escaped(proc, token), 10, message="the double-forked process")
    if tree is not None:
        assert groups.cgroup_of(proc).holds(parse_membership(open(f"/proc/{escaped}/cgroup").read()))
    else:  # the leader is a subreaper: the escaped process is re-parented to it
        wait_until(lambda: int(open(f"/proc/{escaped}/stat").read().rsplit(")", 1)[1].split()[1]) == proc.pid, 10)
    groups.stop(proc, timeout=2)
    wait_until(lambda: not process_running(escaped), 10)
    groups.close()
    if tree is not None:
        assert not os.path.exists(os.path.join(tree.mount, tree.base.lstrip("/")))
