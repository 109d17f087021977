"""A root tenant in a real non-mgmt LXC container cannot exhaust the host's memory (issue 27).

One device, its LXC tenants bounded small so the test is quick:
``lxc_memory_max`` 64 MiB each, ``lxc_tenants_memory_max`` 96 MiB for all of
them together (docs/architecture.md §7.1). Three containers from the demo's
busybox rootfs: ``mgmt`` (no limit), ``hog`` and ``other`` (non-mgmt, under
the baseline). As root inside, with ``lxc-attach``, a tenant writes past its
bound into its boot tmpfs (its ``/tmp`` is the rootfs overlay, whose upper
layer is the boot tmpfs) and into anonymous memory; two tenants together
write past the shared budget. Each time the kernel stops it inside the
tenant's cgroup — the write fails (ENOSPC/ENOMEM) or the tenant's own process
is OOM-killed — while the host's ``GET /containers`` is answered within 1 s,
pvcore stays up and the mgmt container keeps running.

Skipped, saying why, where LXC cannot run or the machine has no memory
cgroup controller.
"""
import os
import re
import shutil
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "plugins", "pv_lxc"))

from lxc_device import attach, containers, init_pid, install, revision, unavailable, unique  # noqa: E402
from pv_lxc import demo, memory  # noqa: E402
from pvcore.supervisor import process_running as alive  # noqa: E402
from pvcore.testing import GunicornServer, short_tempdir, wait_until  # noqa: E402

HIERARCHY = memory.find_hierarchy()
REASON = unavailable() or (None if HIERARCHY else "no memory cgroup controller on this machine")
pytestmark = [pytest.mark.gunicorn, pytest.mark.skipif(REASON is not None, reason=f"LXC memory limit: {REASON}")]

MIB = 1 << 20
LIMIT, BUDGET = 64 * MIB, 96 * MIB
#: upstream's default groups, but a 1 s stable_timeout for the app group (upstream's is 30 s)
QUICK_GROUPS = os.path.join(os.path.dirname(__file__), "..", "plugins", "pv_steps", "groups_quick.json")
ENV = {"PVCORE_CONTAINER_RUNTIME": "lxc", "PVCORE_DEFAULT_GROUPS_FILE": QUICK_GROUPS, "PVCORE_STOP_TIMEOUT": "2", "PVCORE_UPDATE_COMMIT_DELAY": "0.3",
       "PVCORE_LXC_MEMORY_MAX": "64M", "PVCORE_LXC_TENANTS_MEMORY_MAX": "96M"}
#: Anonymous memory: a shell variable of 160 MB (the shell holds it twice while it builds it).
ANON = 'x=$(busybox head -c 160000000 /dev/zero | busybox tr "\\0" a); echo held=${#x}'


class Device:
    def __init__(self, server, mgmt, hog, other):
        self.server, self.mgmt, self.hog, self.other = server, mgmt, hog, other
        self.mgmt_init = init_pid(server, mgmt)


@pytest.fixture(scope="module", name="device")
def _device():
    workdir = short_tempdir("pvimg")
    server = GunicornServer(short_tempdir(), ENV)
    mgmt, hog, other = unique("mgmt"), unique("hog"), unique("other")
    try:
        image = demo.build_rootfs(workdir)
        server.start()
        state, files = revision(image, {
            mgmt: {"group": "platform", "roles": ["mgmt"], "status_goal": "READY"},
            hog: {"group": "app", "roles": [], "status_goal": "READY"},
            other: {"group": "app", "roles": [], "status_goal": "READY"},
        })
        progress = install(server, "locals/memory", state, files)
        assert progress["status"] in ("UPDATED", "DONE"), progress
        _all_ready(server)
        yield Device(server, mgmt, hog, other)
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _all_ready(server):
    wait_until(lambda: all(c["status"] == "READY" for c in containers(server).values()), 30,
               message="every container READY")


def _memcg(server, name):
    """The cgroupfs directory of container ``name`` in the memory hierarchy."""
    return _memcg_of(init_pid(server, name))


def _memcg_of(pid):
    with open(f"/proc/{pid}/cgroup") as fh:
        for line in fh:
            _id, controllers, path = line.rstrip("\n").split(":", 2)
            if (HIERARCHY.version == "cgroup" and "memory" in controllers.split(",")) or \
                    (HIERARCHY.version == "cgroup2" and _id == "0"):
                return os.path.join(HIERARCHY.mount, path.lstrip("/"))
    raise LookupError(pid)


def _read(cgroup, name):
    with open(os.path.join(cgroup, name)) as fh:
        return fh.read()


def _limit(cgroup):
    return int(_read(cgroup, HIERARCHY.limit_file).strip())


def _ooms(cgroup):
    """How often the kernel's OOM killer ended a process of ``cgroup`` or below (v1 counts per cgroup)."""
    if HIERARCHY.version == "cgroup2":
        text = _read(cgroup, "memory.events")
        return int(dict(line.split() for line in text.splitlines()).get("oom_kill", 0))
    count = 0
    for root, _dirs, _files in os.walk(cgroup):
        text = _read(root, "memory.oom_control")
        count += int(dict(line.split() for line in text.splitlines()).get("oom_kill", 0))
    return count


def _peak(cgroup):
    name = "memory.max_usage_in_bytes" if HIERARCHY.version == "cgroup" else "memory.peak"
    return int(_read(cgroup, name).strip()) if os.path.exists(os.path.join(cgroup, name)) else None


class HostProbe:
    """``GET /containers`` from the host in a loop while a tenant misbehaves; the slowest answer."""

    def __init__(self, server):
        self.server, self.times, self.statuses = server, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            started = time.monotonic()
            status = self.server.request("GET", "/containers")[0]
            self.times.append(time.monotonic() - started)
            self.statuses.append(status)
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def check(self):
        assert self.statuses and set(self.statuses) == {200}, self.statuses
        assert max(self.times) < 1.0, f"slowest host GET /containers: {max(self.times):.3f} s"


def _host_unharmed(device, before_pid):
    server = device.server
    assert server.proc.poll() is None  # pvcore is up, its worker the same one
    assert server.worker_pid() == before_pid and alive(before_pid)
    assert init_pid(server, device.mgmt) == device.mgmt_init  # the mgmt container never noticed
    started = time.monotonic()
    assert server.request("GET", "/containers")[0] == 200
    assert time.monotonic() - started < 1.0


def _fill(server, name):
    """``/tmp/fill`` of container ``name``, as the host sees it: in its boot tmpfs (the overlay's upper layer)."""
    return os.path.join(server.run_dir, "lxc", name, "boot", "lxc-overlay", "upper", "tmp", "fill")


def _unfill(server, name):
    """What the tenant wrote (bytes), given back from the host at once: a tenant at its bound
    has nothing left to run anything with, and the kernel would take its init next."""
    try:
        size = os.path.getsize(_fill(server, name))
        os.unlink(_fill(server, name))
    except FileNotFoundError:
        return 0  # its container died, its boot tmpfs with it
    return size


def _stopped(out, written, wanted, init_before, server, name):
    """The kernel stopped the tenant's tmpfs write short of ``wanted`` bytes, and the tenant saw it:
    its dd failed (ENOSPC/ENOMEM) or was OOM-killed, or — the kernel's next victim in a full
    cgroup — its init was, and the engine restarted the container."""
    assert written < wanted and "dd=0" not in out, (written, out)
    assert re.search(r"dd=[1-9]", out) or "Killed" in out or init_pid(server, name) != init_before, out


def test_the_baseline_puts_each_tenant_in_the_shared_budget_with_its_own_limit(device):
    hog, mgmt = _memcg(device.server, device.hog), _memcg(device.server, device.mgmt)
    assert _limit(hog) == LIMIT
    assert os.path.basename(hog) == f"lxc.payload.{device.hog}"
    assert _limit(os.path.dirname(hog)) == BUDGET
    assert os.path.dirname(_memcg(device.server, device.other)) == os.path.dirname(hog)
    # the mgmt container: no limit of pvcore's, outside the tenants' parent
    assert _limit(mgmt) > BUDGET and os.path.dirname(mgmt) != os.path.dirname(hog)
    # LXC's monitor (lxc-start, the init's parent) is outside the budget: the OOM killer never takes it
    with open(f"/proc/{init_pid(device.server, device.hog)}/stat") as fh:
        monitor = int(fh.read().rsplit(")", 1)[1].split()[1])
    assert not _memcg_of(monitor).startswith(os.path.dirname(hog) + "/")


def test_a_tenant_filling_its_boot_tmpfs_is_stopped_at_its_limit(device):
    server, cgroup = device.server, _memcg(device.server, device.hog)
    worker, init = server.worker_pid(), init_pid(server, device.hog)
    with HostProbe(server) as probe:
        out = attach(server, device.hog, "busybox dd if=/dev/zero of=/tmp/fill bs=1M count=160; echo dd=$?")
        written = _unfill(server, device.hog)
    probe.check()
    _stopped(out, written, LIMIT, init, server, device.hog)
    peak = _peak(cgroup)
    assert peak is None or peak <= LIMIT, peak
    _host_unharmed(device, worker)
    _all_ready(server)


def test_a_tenant_allocating_anonymous_memory_is_oom_killed_in_its_own_cgroup(device):
    server, cgroup = device.server, _memcg(device.server, device.hog)
    worker, ooms = server.worker_pid(), _ooms(cgroup)
    with HostProbe(server) as probe:
        out = attach(server, device.hog, ANON)
    probe.check()
    # the shell holding it is the largest process there: the kernel kills it, and that frees it all
    assert "held=" not in out and _ooms(cgroup) > ooms, out
    _host_unharmed(device, worker)
    _all_ready(server)


def test_two_tenants_together_are_stopped_at_the_shared_budget(device):
    # each stays under its own 64 MiB, but 48 + 48 MiB and what their processes hold pass the 96 MiB budget
    server = device.server
    parent = os.path.dirname(_memcg(server, device.hog))
    worker, init = server.worker_pid(), init_pid(server, device.other)
    try:
        first = attach(server, device.hog, "busybox dd if=/dev/zero of=/tmp/fill bs=1M count=48; echo dd=$?")
        assert "dd=0" in first, first  # within both bounds
        with HostProbe(server) as probe:
            out = attach(server, device.other, "busybox dd if=/dev/zero of=/tmp/fill bs=1M count=48; echo dd=$?")
            written = _unfill(server, device.other)
        probe.check()
        _stopped(out, written, 48 * MIB, init, server, device.other)
        peak = _peak(parent)
        assert peak is None or peak <= BUDGET, peak
        _host_unharmed(device, worker)
    finally:
        _unfill(server, device.hog)
    _all_ready(server)
