"""The tenants' memory budget: one parent cgroup with a limit (real cgroupfs; root and a memory controller)."""
import os
import uuid

import pytest

from pv_lxc import memory

HIERARCHY = memory.find_hierarchy()
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or HIERARCHY is None,
                                reason="needs root and a memory cgroup controller")


def _read(budget, name):
    with open(os.path.join(budget.hierarchy.mount, budget.path, name)) as fh:
        return fh.read().strip()


@pytest.fixture(name="budget")
def _budget():
    budget = memory.TenantBudget(f"/tmp/test-{uuid.uuid4().hex}", 96 << 20, HIERARCHY)
    yield budget
    budget.close()
    assert not os.path.exists(os.path.join(HIERARCHY.mount, budget.base))


def test_the_parent_is_made_with_its_limit_and_follows_a_changed_one(budget):
    assert budget.ensure() == budget.path and budget.path.startswith(memory.PARENT + "/")
    assert int(_read(budget, HIERARCHY.limit_file)) == 96 << 20
    if memory.swap_bounded(HIERARCHY) and HIERARCHY.version == "cgroup":
        assert int(_read(budget, HIERARCHY.swap_file)) == 96 << 20  # swap cannot extend it
    # a new worker with a larger budget raises it (memsw first on v1), a smaller one lowers it
    for limit in (128 << 20, 64 << 20):
        budget.limit = limit
        assert budget.ensure() == budget.path
        assert int(_read(budget, HIERARCHY.limit_file)) == limit


def test_lxcs_monitors_are_outside_the_budget():
    budget = memory.TenantBudget("/x", 1)
    payload = f"/sys/fs/cgroup/memory/{budget.path}/lxc.payload.app"
    assert memory.monitor_of(payload) == f"/sys/fs/cgroup/memory/{budget.monitors}/lxc.monitor.app"
    assert not memory.monitor_of(payload).startswith(os.path.dirname(payload) + "/")
    # LXC's default place: the sibling
    assert memory.monitor_of("/sys/fs/cgroup/pids/lxc.payload.app") == "/sys/fs/cgroup/pids/lxc.monitor.app"


def test_no_budget_no_parent():
    budget = memory.TenantBudget(f"/tmp/test-{uuid.uuid4().hex}", 0, HIERARCHY)
    assert budget.ensure() == ""
    assert not os.path.exists(os.path.join(HIERARCHY.mount, budget.path))
