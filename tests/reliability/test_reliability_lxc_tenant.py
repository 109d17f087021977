"""A hostile root tenant in a real non-mgmt LXC container (issue 27: identity, host, pids, connect flood, loops).

One device runs three containers from the demo's busybox rootfs:

* ``mgmt``: the mgmt container, the target of impersonation;
* ``hostile``: non-mgmt, its config as the demo's — it runs under the
  hardening baseline (docs/architecture.md §7.1);
* ``granted``: non-mgmt, whose own config grants the loop devices back (an
  integrator's explicit opt-out), so it can ``losetup``.

The payloads are ``sh`` scripts run inside with ``lxc-attach`` (root in the
container, its own process). Moving a tenant's process into another
container's cgroup needs a cgroupfs the baseline no longer gives it (and
LXC here cannot start a container that keeps the host's cgroup
namespace), so the test does that move from the host — the state a tenant
that reached a cgroupfs would leave — and the payload then calls pv-ctrl.
Skipped, saying why, where LXC cannot run.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "plugins", "pv_lxc"))

from lxc_device import (attach, container_cgroup, containers, init_pid, install, lxc_path, revision,  # noqa: E402
                        unavailable, unique)
from pv_lxc import demo, loops, mounts  # noqa: E402
from pvcore.bench.flood import probe  # noqa: E402
from pvcore.testing import GunicornServer, short_tempdir, wait_until  # noqa: E402
from reliability_helpers import LONG, kill_worker  # noqa: E402

REASON = unavailable()
pytestmark = [pytest.mark.gunicorn, pytest.mark.skipif(REASON is not None, reason=f"LXC runtime: {REASON}")]

ENV = {"PVCORE_CONTAINER_RUNTIME": "lxc", "PVCORE_STOP_TIMEOUT": "2", "PVCORE_UPDATE_COMMIT_DELAY": "0.3"}

#: The granted container's own lines: the loop devices (loop-control, loop block devices).
GRANTS = "".join(f"{prefix}.devices.allow = {rule}\n" for prefix in ("lxc.cgroup", "lxc.cgroup2")
                 for rule in ("c 10:237 rwm", "b 7:* rwm"))

REQUEST = ("printf '%s %s HTTP/1.0\\r\\nHost: localhost\\r\\nContent-Length: %d\\r\\n\\r\\n%s' "
           "{method} {path} {length} '{body}'")
READY = '{"type":"ready","payload":""}'


def _http(method, path, body=""):
    """A shell pipeline sending one request over the socket; prints the status line."""
    return (REQUEST.format(method=method, path=path, length=len(body), body=body)
            + " | nc.openbsd -U /pantavisor/pv-ctrl | head -n 1")


def _hierarchies():
    """``{name: cgroupfs directory}`` of every hierarchy mounted here (``unified`` for cgroup v2)."""
    found = {}
    with open("/proc/self/mounts") as fh:
        for line in fh:
            fields = line.split()
            if fields[2] in ("cgroup", "cgroup2"):
                found["unified" if fields[2] == "cgroup2" else os.path.basename(fields[1])] = fields[1]
    return found


def _moved_then(tenant, container, moves, script):
    """Run ``script`` in ``container`` after the host moved its shell: ``moves`` maps a hierarchy
    name to the cgroup (relative to that hierarchy) its pid is written into."""
    go = os.path.join(lxc_path(tenant.server), container, "rootfs", "tmp", "go")
    if os.path.exists(go):
        os.unlink(go)
    proc = subprocess.Popen(["lxc-attach", "-n", container, "-P", lxc_path(tenant.server), "--", "/bin/sh", "-c",
                             "while [ ! -e /tmp/go ]; do sleep 0.05; done; " + script],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def shell():
            # lxc-attach's own helper comes and goes; the payload is the container's busybox sh
            try:
                with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as fh:
                    pids = [int(p) for p in fh.read().split()]
                return next((p for p in pids if os.readlink(f"/proc/{p}/exe").endswith("busybox")), None)
            except (OSError, ValueError):
                return None
        pid = wait_until(shell, 10, message="the attached shell")
        for name, cgroup in moves.items():
            with open(os.path.join(_hierarchies()[name], cgroup.lstrip("/"), "cgroup.procs"), "w") as fh:
                fh.write(str(pid))
        with open(f"/proc/{pid}/cgroup") as fh:
            seen = fh.read()
        for name, cgroup in moves.items():  # as the host sees it
            assert any(line.endswith(":/" + cgroup.lstrip("/")) for line in seen.splitlines()), (name, cgroup, seen)
        with open(go, "w"):
            pass
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out


#: The app group's recovery without its 30 s stable_timeout: the update ends
#: as soon as the containers are READY, not 30 s later.
NO_STABILITY_WAIT = {"policy": "on-failure", "max_retries": 5, "retry_delay": 5}


class Tenant:
    def __init__(self, server, mgmt, hostile, granted, rev):
        self.server, self.mgmt, self.hostile, self.granted, self.rev = server, mgmt, hostile, granted, rev


@pytest.fixture(scope="module", name="image")
def _image():
    workdir = short_tempdir("pvimg")
    yield demo.build_rootfs(workdir)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module", name="tenant")
def _tenant(image):
    server = GunicornServer(short_tempdir(), ENV)
    mgmt, hostile, granted = unique("mgmt"), unique("hostile"), unique("granted")
    try:
        server.start()
        state, files = revision(image, {
            mgmt: {"group": "platform", "roles": ["mgmt"], "status_goal": "READY"},
            hostile: {"group": "app", "roles": [], "status_goal": "READY", "auto_recovery": NO_STABILITY_WAIT},
            granted: {"group": "app", "roles": [], "status_goal": "READY", "auto_recovery": NO_STABILITY_WAIT,
                      "conf": demo.lxc_conf("ready", GRANTS)},
        })
        progress = install(server, "locals/tenant", state, files)
        if progress["status"] not in ("UPDATED", "DONE"):
            pytest.fail(json.dumps([e for e in server.log_events() if e.get("level") in ("warning", "error")]))
        wait_until(lambda: all(c["status"] == "READY" for c in containers(server).values()), 20,
                   message="every container READY")
        yield Tenant(server, mgmt, hostile, granted, "locals/tenant")
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


def _disputes(server):
    return [e for e in server.log_events() if e.get("event") == "caller_identity_disputed"]


# -- 1. identity a tenant cannot forge ------------------------------------------------------------


@pytest.mark.parametrize("hierarchy", sorted(_hierarchies()) + ["every"])
def test_a_tenant_in_the_mgmt_cgroup_of_one_hierarchy_is_unknown_never_mgmt(tenant, hierarchy):
    names = sorted(_hierarchies()) if hierarchy == "every" else [hierarchy]
    # (in every hierarchy, its pid namespace still says it is the hostile container's)
    out = _moved_then(tenant, tenant.hostile, {name: f"lxc.payload.{tenant.mgmt}" for name in names},
                      _http("GET", "/containers"))
    assert "HTTP/1.0 500" in out and "HTTP/1.0 200" not in out, out
    assert any(e.get("named") and e.get("pid_namespaces") for e in _disputes(tenant.server))


def test_ready_for_another_container_is_refused(tenant):
    # its own READY is accepted (a container signals for itself)...
    assert "HTTP/1.0 200" in attach(tenant.server, tenant.hostile, _http("POST", "/signal", READY))
    # ...but not from inside the mgmt container's cgroup of one hierarchy
    hierarchy = "systemd" if "systemd" in _hierarchies() else "unified"
    out = _moved_then(tenant, tenant.hostile, {hierarchy: f"lxc.payload.{tenant.mgmt}"}, _http("POST", "/signal", READY))
    assert "HTTP/1.0 500" in out, out


def test_a_tenant_that_moves_itself_to_the_root_cgroups_is_not_the_host(tenant):
    # (_moved_then checks, from the host, that it sits in the root cgroup of every hierarchy)
    out = _moved_then(tenant, tenant.hostile, {name: "/" for name in _hierarchies()}, _http("GET", "/containers"))
    assert "HTTP/1.0 500" in out, out  # unknown: its pid namespace is the container's, never the host's


# -- 2. a host the runtime does not hand over ----------------------------------------------------------


def _mount_root(path):
    """The mount point of the filesystem that holds ``path``."""
    dev, root = os.stat(path).st_dev, os.path.realpath(path)
    while os.path.dirname(root) != root and os.stat(os.path.dirname(root)).st_dev == dev:
        root = os.path.dirname(root)
    return root


def test_the_baseline_tenant_cannot_mknod_and_mount_the_hosts_disk(tenant):
    st = os.stat(tenant.server.base)
    root = _mount_root(tenant.server.base)
    marker = os.path.join(root, unique(".pvcore-escaped"))
    with open("/proc/self/mounts") as fh:
        fstype = [line.split()[2] for line in fh if line.split()[1] == root][-1]
    try:
        # /dev is the container's own tmpfs, where device nodes work (its rootfs layers are nodev)
        out = attach(tenant.server, tenant.hostile,
                     f"busybox mknod /dev/disk b {os.major(st.st_dev)} {os.minor(st.st_dev)}; echo mknod=$?; "
                     f"mkdir -p /dev/host; busybox mount -t {fstype} /dev/disk /dev/host; echo mount=$?; "
                     f"echo pwned > /dev/host/{os.path.basename(marker)}; busybox umount /dev/host; "
                     "busybox mount -t cgroup2 none /dev/host; echo cgroupfs=$?; "
                     "echo $$ > /sys/fs/cgroup/pids/cgroup.procs; echo cgroupwrite=$?; "
                     "echo pids.max=$(cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null); "
                     "grep CapEff /proc/self/status")
        assert not os.path.exists(marker), out
    finally:
        if os.path.exists(marker):
            os.unlink(marker)
    assert "mknod=0" not in out and "mount=0" not in out and "cgroupfs=0" not in out, out
    assert "cgroupwrite=0" not in out and "pids.max=1024" in out, out
    # sys_admin (bit 21) is gone from its effective capabilities
    cap_eff = int(out.split("CapEff:")[1].split()[0], 16)
    assert not cap_eff & (1 << 21), out


@pytest.mark.skipif(not LONG, reason="1,024 forks take 2-20 s on a loaded machine (make test-long)")
def test_a_fork_bomb_of_2000_is_bounded_by_the_pids_limit(tenant):
    # the sleeps do not hold the output pipe: the shell's own "can't fork" ends the attach
    out = attach(tenant.server, tenant.hostile,
                 "cat /sys/fs/cgroup/pids/pids.max; "
                 "i=0; while [ $i -lt 2000 ]; do sleep 600 </dev/null >/dev/null 2>&1 & i=$((i+1)); done; "
                 "echo spawned=$i")
    procs = os.path.join(container_cgroup(tenant.server, tenant.hostile, "pids"), "cgroup.procs")
    try:
        assert out.startswith("1024") and "spawned=2000" not in out and "can't fork" in out, out
        # the host is served all along, and the tenant's container is not hurt for good
        started = time.monotonic()
        assert tenant.server.request("GET", "/containers")[0] == 200
        assert time.monotonic() - started < 1.0
    finally:
        _kill_sleeps(procs)
    wait_until(lambda: containers(tenant.server)[tenant.hostile]["status"] == "READY", 10)


def _kill_sleeps(procs):
    """SIGKILL the bomb's sleeps: the processes of that container cgroup named ``sleep``."""
    try:
        with open(procs) as fh:
            pids = [int(p) for p in fh.read().split()]
    except OSError:
        return
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as fh:
                if fh.read().strip() == "sleep":
                    os.kill(pid, 9)
        except OSError:
            pass


# -- 4. no starvation without privilege ----------------------------------------------------------------

# four loops connecting and closing; each connection leaves a line in /tmp/tries
FLOOD = ("rm -f /tmp/tries; for i in 1 2 3 4; do (while [ ! -e /tmp/stop ]; do "
         "nc.openbsd -U -N /pantavisor/pv-ctrl </dev/null; echo >> /tmp/tries; done) & done; wait; "
         "busybox wc -l < /tmp/tries")


def test_a_connect_flood_fills_only_the_tenants_own_socket(tenant):
    server = tenant.server
    own = os.path.join(os.path.dirname(os.path.abspath(server.socket)), "ctrl", tenant.hostile)
    inside = attach(server, tenant.hostile, "busybox stat -c %i /pantavisor/pv-ctrl").strip()
    assert inside == str(os.stat(own).st_ino) != str(os.stat(server.socket).st_ino), inside
    stop = os.path.join(lxc_path(server), tenant.hostile, "rootfs", "tmp", "stop")
    if os.path.exists(stop):
        os.unlink(stop)
    flood = subprocess.Popen(["lxc-attach", "-n", tenant.hostile, "-P", lxc_path(server), "--", "/bin/sh", "-c", FLOOD],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    tries = os.path.join(lxc_path(server), tenant.hostile, "rootfs", "tmp", "tries")
    try:
        wait_until(lambda: os.path.exists(tries) and os.path.getsize(tries) > 100, 10, message="the flood under way")
        times, failures = probe(server.socket, 100, timeout=5.0)
    finally:
        with open(stop, "w"):
            pass
        try:
            out, _ = flood.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            flood.kill()
            out, _ = flood.communicate()
    assert failures == 0 and max(times) < 1.0, (failures, sorted(times)[-5:])
    assert int(out.split()[-1]) > 300, out  # it did flood
    # whatever was shed was the tenant's, counted at its own socket
    shed = {e["caller"] for e in server.log_events() if e.get("event") == "caller_connections_shed"}
    assert shed <= {tenant.hostile}, shed


# -- 5. loop devices a container attached go with it -----------------------------------------------------


LOSETUP = ("busybox mknod /dev/loop-control c 10 237 2>/dev/null; "
           "i=0; while [ $i -lt 64 ]; do busybox mknod /dev/loop$i b 7 $i 2>/dev/null; i=$((i+1)); done; "
           "busybox dd if=/dev/zero of=/tmp/disk.img bs=1k count=256 2>/dev/null; "
           "busybox dd if=/dev/zero of=/dev/shm.img bs=1k count=256 2>/dev/null; "
           "busybox losetup -f /tmp/disk.img && busybox losetup -f /dev/shm.img && busybox losetup -a")


def _theirs():
    """Loop devices whose backing file is one of the tenant's images."""
    found = []
    for device in loops.attached():
        path = mounts.loop_backing_file(device) or ""
        if path.endswith(("/disk.img", "/shm.img")) or path in ("/disk.img", "/shm.img"):
            found.append(device)
    return found


def _attach_loops(tenant):
    out = attach(tenant.server, tenant.granted, LOSETUP)
    assert out.count("/dev/loop") >= 2, out
    assert len(_theirs()) >= 2, out


def test_loop_devices_a_container_attached_go_when_it_stops(tenant):
    server, name = tenant.server, tenant.granted
    _attach_loops(tenant)
    assert server.request("PUT", f"/containers/{name}", b'{"action":"stop"}')[0] == 200
    wait_until(lambda: containers(server)[name]["status"] == "STOPPED", 20)
    wait_until(lambda: not _theirs(), 5, message="the tenant's loop devices detached")
    assert server.request("PUT", f"/containers/{name}", b'{"action":"start"}')[0] == 200
    wait_until(lambda: containers(server)[name]["status"] == "READY", 20)


@pytest.mark.skipif(not LONG, reason="kills the worker and waits for LXC cleanup (make test-long)")
def test_loop_devices_a_container_attached_go_after_a_pvcore_restart(tenant):
    server = tenant.server
    wait_until(lambda: containers(server)[tenant.granted]["status"] == "READY", 20)
    _attach_loops(tenant)
    kill_worker(server)
    wait_until(lambda: not _theirs(), 30, message="the tenant's loop devices detached by the next worker")
    wait_until(lambda: all(c["status"] == "READY" for c in containers(server).values()), 30)
    assert init_pid(server, tenant.granted)
    assert os.path.isdir(lxc_path(server))
