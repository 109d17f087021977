"""The LXC runtime over the real socket: real squashfs rootfs, real LXC containers, real mounts.

Skipped (with the reason) only where the machine cannot run LXC: not root,
tools missing, no loop devices, no squashfs/overlay. As root on Debian with
``make test`` (which installs the tools) they run.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from lxc_device import (assert_clean, attach, console, containers, init_pid, install, leftovers, loops_backed_under,
                        lxc_path, mounts_under, payload_cgroups, request_from, revision, unavailable,
                        unique)
from pv_lxc import demo
from pvcore.supervisor import process_running as alive
from pvcore.testing import GunicornServer, short_tempdir, wait_until

REASON = unavailable()
pytestmark = [pytest.mark.gunicorn, pytest.mark.skipif(REASON is not None, reason=f"LXC runtime: {REASON}")]

#: upstream's default groups, but a 1 s stable_timeout for the app group (upstream's is 30 s)
QUICK_GROUPS = os.path.join(os.path.dirname(__file__), "..", "pv_steps", "groups_quick.json")
ENV = {"PVCORE_CONTAINER_RUNTIME": "lxc", "PVCORE_STOP_TIMEOUT": "3", "PVCORE_UPDATE_COMMIT_DELAY": "0.3",
       "PVCORE_DEFAULT_GROUPS_FILE": QUICK_GROUPS}
FORBIDDEN = '{"Error":"Request not sent from a mgmt platform"}'


@pytest.fixture(scope="module", name="image")
def _image():
    workdir = short_tempdir("pvimg")
    yield demo.build_rootfs(workdir)
    shutil.rmtree(workdir, ignore_errors=True)


class Device:
    def __init__(self, server, mgmt, plain, rev, state, progress):
        self.server, self.mgmt, self.plain, self.rev, self.state, self.progress = \
            server, mgmt, plain, rev, state, progress


@pytest.fixture(scope="module", name="device")
def _device(image):
    """One server running a two-container LXC revision: a mgmt one and an unprivileged one."""
    server = GunicornServer(short_tempdir(), ENV)
    mgmt, plain = unique("mgmt"), unique("plain")
    try:
        server.start()
        state, files = revision(image, {
            mgmt: {"group": "platform", "roles": ["mgmt"], "status_goal": "READY",
                   "configs": {"etc/settings.json": {"level": 3}}},
            plain: {"group": "app", "roles": [], "status_goal": "READY",
                    "configs": {"etc/hostname": b"configured\n", "etc/pvcore/app.conf": b"hello\n"}},
        })
        progress = install(server, "locals/lxc", state, files)
        yield Device(server, mgmt, plain, "locals/lxc", state, progress)
        server.stop()
        assert_clean(server, [mgmt, plain])
        errors = [e for e in server.log_events() if e.get("event") == "unhandled_error"]
        assert errors == []
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


def _ready(device):
    listing = containers(device.server)
    return listing if all(c["status"] == "READY" for c in listing.values()) else None


def test_local_run_boots_real_containers_from_the_revision(device):
    server = device.server
    assert device.progress["status"] in ("UPDATED", "DONE"), device.progress
    listing = wait_until(lambda: _ready(device), 20, message="both containers READY")
    assert listing[device.mgmt]["roles"] == ["mgmt"] and listing[device.plain]["roles"] == []
    rootfs_object = os.path.join(server.storage_dir, "objects", device.state[f"{device.mgmt}/root.squashfs"])
    for name in (device.mgmt, device.plain):
        pid = init_pid(server, name)
        assert pid and alive(pid)
        # its own pid and mount namespaces
        for ns in ("pid", "mnt"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
        # it saw itself as pid 1, found the socket inside, and its ready signal moved it to READY
        # (the line after the signal may land a moment after READY)
        text = wait_until(lambda: (lambda t: "ready signal accepted" in t and t)(console(server, device.rev, name)),
                          10, message="the ready line in the console")
        assert f"pvdemo {name}: init pid 1, /pantavisor/pv-ctrl /pantavisor/pv-ctrl" in text
        assert f"pvdemo {name}: ready signal accepted" in text
        # the rootfs object is mounted read-only through a loop device, under an overlay
        base = os.path.join(lxc_path(server), name)
        with open("/proc/self/mountinfo") as fh:
            table = {line.split()[4]: line for line in fh}
        lower = table[os.path.join(base, "mnt", "root.squashfs")]
        assert " - squashfs /dev/loop" in lower and " ro," in lower.split(" - ")[1] + ","
        assert " - overlay overlay " in table[os.path.join(base, "rootfs")]
    assert len([l for l in loops_backed_under(server.base) if l.endswith(rootfs_object)]) == 2
    signallers = {e.get("caller") for e in server.log_events() if e.get("path") == "/signal"}
    assert {device.mgmt, device.plain} <= signallers


def test_writable_layer_is_this_starts_tmpfs_and_volumes_land_under_disks(device):
    server, name = device.server, device.plain
    wait_until(lambda: _ready(device), 20)
    assert "pvcore's LXC demo init" in attach(server, name, "head -n 2 /sbin/pvdemo-init")
    attach(server, name, "echo scratch > /tmp/scratch; echo kept > /data/kept")
    # the boot-persistent upper layer is on a tmpfs of this start, never on the storage
    boot = os.path.join(lxc_path(server), name, "boot")
    with open("/proc/self/mountinfo") as fh:
        assert any(line.split()[4] == boot and " - tmpfs " in line for line in fh)
    upper = os.path.join(boot, "lxc-overlay", "upper")
    with open(os.path.join(upper, "tmp", "scratch")) as fh:
        assert fh.read() == "scratch\n"
    assert not os.path.exists(os.path.join(server.storage_dir, "disks", "boot"))
    # the "data" storage entry (persistence permanent), bound where the container's config says
    with open(os.path.join(server.storage_dir, "disks", "perm", name, "data", "kept")) as fh:
        assert fh.read() == "kept\n"
    # a new file in the rootfs goes to the upper layer; the squashfs below stays as it was
    attach(server, name, "touch /bin/added")
    assert os.path.exists(os.path.join(upper, "bin", "added"))
    assert not os.path.exists(os.path.join(lxc_path(server), name, "mnt", "root.squashfs", "bin", "added"))


def test_config_overlay_lies_over_the_rootfs(device):
    server = device.server
    wait_until(lambda: _ready(device), 20)
    # an object over a file of the squashfs, a new file in a new directory, a JSON document inline
    assert attach(server, device.plain, "cat /etc/hostname /etc/pvcore/app.conf") == "configured\nhello\n"
    assert attach(server, device.mgmt, "cat /etc/settings.json; cat /etc/hostname") == '{"level": 3}pvdemo\n'
    assert "No such file" in attach(server, device.mgmt, "cat /etc/pvcore/app.conf")  # each its own
    # the container may change its copy; the change goes to its upper layer, not below
    attach(server, device.plain, "echo changed > /etc/pvcore/app.conf")
    assert attach(server, device.plain, "cat /etc/pvcore/app.conf") == "changed\n"
    with open(os.path.join(lxc_path(server), device.plain, "configs", "etc", "pvcore", "app.conf")) as fh:
        assert fh.read() == "hello\n"


def _meta(server, kind, key, value):
    assert server.request("PUT", f"/{kind}/{key}", value)[0] == 200


def test_pantavisor_shows_metadata_and_logs_read_only(device):
    server, plain, mgmt = device.server, device.plain, device.mgmt
    wait_until(lambda: _ready(device), 20)
    for name in (plain, mgmt):
        assert attach(server, name, "ls /pantavisor").split() == ["device-meta", "logs", "pv-ctrl", "user-meta"]
    _meta(server, "user-meta", f"{plain}.greeting", b"hello")
    _meta(server, "user-meta", "other.key", b"not yours")
    _meta(server, "device-meta", f"{plain}.serial", b"42")
    # a container sees its own keys (<name>.<key> as <key>), after it started too
    assert attach(server, plain, "ls /pantavisor/user-meta; cat /pantavisor/user-meta/greeting") == \
        "greeting\nhello"
    assert attach(server, plain, "ls /pantavisor/device-meta; cat /pantavisor/device-meta/serial") == "serial\n42"
    # a mgmt container sees every key
    assert {f"{plain}.greeting", "other.key"} <= set(attach(server, mgmt, "ls /pantavisor/user-meta").split())
    assert attach(server, mgmt, "cat /pantavisor/device-meta/pantavisor.revision") == device.rev
    # logs: its own console log; a mgmt container every revision's and container's
    assert attach(server, plain, "ls /pantavisor/logs").split() == ["console.log"]
    assert attach(server, mgmt, f"ls /pantavisor/logs/{device.rev}").split() == sorted([mgmt, plain])
    assert "ready signal accepted" in attach(server, plain, "cat /pantavisor/logs/console.log")
    # read-only, whoever asks
    for name, path in ((plain, "user-meta/greeting"), (plain, "logs/console.log"), (plain, "device-meta/serial"),
                       (mgmt, "device-meta/pantavisor.revision"), (mgmt, "user-meta/other.key"),
                       (mgmt, f"logs/{device.rev}/{plain}/console.log")):
        out = attach(server, name, f"echo forged > /pantavisor/{path} && echo WROTE; "
                                   f"rm /pantavisor/{path} && echo REMOVED; mkdir /pantavisor/{path}.d && echo MADE")
        assert "WROTE" not in out and "REMOVED" not in out and "MADE" not in out, (name, path, out)
    # a non-mgmt container cannot make them writable either (no CAP_SYS_ADMIN: the hardening baseline)
    out = attach(server, plain, "mount -o remount,bind,rw /pantavisor/user-meta && echo REMOUNTED; "
                                "echo forged > /pantavisor/user-meta/greeting && echo WROTE")
    assert "REMOUNTED" not in out and "WROTE" not in out, out
    with open(os.path.join(server.run_dir, "user-meta", f"{plain}.greeting")) as fh:
        assert fh.read() == "hello"
    assert json.loads(server.request("GET", "/user-meta")[2])["other.key"] == "not yours"


def test_callers_identified_by_cgroup_and_roles_enforced(device):
    server = device.server
    wait_until(lambda: _ready(device), 20)
    # lxc-attach runs outside init's process tree, inside the container's cgroup
    reply = request_from(server, device.plain, "GET", "/containers")
    assert reply.startswith("HTTP/1.0 403") and reply.endswith(FORBIDDEN), reply
    assert request_from(server, device.mgmt, "GET", "/containers").startswith("HTTP/1.0 200")
    # a process that escapes its tree (setsid, double fork) is still that container
    request = "GET /containers HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n"
    out = attach(server, device.plain,
                 f"(setsid sh -c \"printf '{request}' | nc.openbsd -U /pantavisor/pv-ctrl > /tmp/escaped\" &); "
                 "i=0; while [ ! -s /tmp/escaped ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; "
                 "head -n 1 /tmp/escaped")
    assert out.startswith("HTTP/1.0 403"), out


def test_stop_start_restart_by_api(device):
    server, name = device.server, device.plain
    wait_until(lambda: _ready(device), 20)
    first = init_pid(server, name)
    base = os.path.join(lxc_path(server), name)
    assert server.request("PUT", f"/containers/{name}", b'{"action":"stop"}')[0] == 200
    wait_until(lambda: containers(server)[name]["status"] == "STOPPED", 15)
    assert init_pid(server, name) is None and not alive(first)
    assert mounts_under(base) == [] and not os.path.exists(base)
    assert len(loops_backed_under(server.base)) == 1  # only the mgmt container's
    assert server.request("PUT", f"/containers/{name}", b'{"action":"start"}')[0] == 200
    wait_until(lambda: _ready(device), 20, message="READY after start")
    second = init_pid(server, name)
    assert second and second != first
    assert server.request("PUT", f"/containers/{name}", b'{"action":"restart"}')[0] == 200
    wait_until(lambda: init_pid(server, name) not in (None, second) and _ready(device), 20,
               message="READY after restart")
    assert not alive(second)
    try:
        wait_until(lambda: console(server, device.rev, name).count("ready signal accepted") == 3, 10)
    except AssertionError:
        events = [(e.get("event"), e.get("old"), e.get("new"), e.get("exit_code")) for e in server.log_events()
                  if e.get("container") == name]
        raise AssertionError(f"three ready lines expected:\n{console(server, device.rev, name)}\n{events}")
    assert len(mounts_under(base)) == 3 and len(loops_backed_under(server.base)) == 2  # squashfs, boot tmpfs, overlay


def test_revision_switch_stops_them_and_shutdown_leaves_nothing(image):
    server = GunicornServer(short_tempdir(), ENV)
    first, second = unique("first"), unique("second")
    try:
        server.start()
        state, files = revision(image, {first: {"status_goal": "READY"}})
        assert install(server, "locals/one", state, files)["status"] in ("UPDATED", "DONE")
        old = init_pid(server, first)
        assert old and containers(server)[first]["status"] == "READY"
        state, files = revision(image, {second: {"status_goal": "READY"}})
        assert install(server, "locals/two", state, files)["status"] in ("UPDATED", "DONE")
        assert list(containers(server)) == [second] and containers(server)[second]["status"] == "READY"
        assert not alive(old) and init_pid(server, first) is None
        assert mounts_under(os.path.join(lxc_path(server), first)) == []
        assert len(loops_backed_under(server.base)) == 1
        assert f"pvdemo {first}: halting" in console(server, "locals/one", first)  # asked politely first
        pid = init_pid(server, second)
        assert server.stop() == 0
        assert not alive(pid)
        assert_clean(server, [first, second])
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


def test_worker_killed_with_sigkill_is_cleaned_up_at_next_start(image):
    server = GunicornServer(short_tempdir(), ENV)
    names = [unique("crash")]
    try:
        server.start()
        state, files = revision(image, {names[0]: {"status_goal": "READY"}})
        # the first revision of an empty device is a reboot transition (DONE, docs/protocol.md §D3.4)
        assert install(server, "locals/crash", state, files)["status"] in ("UPDATED", "DONE")
        before = init_pid(server, names[0])
        assert before and len(mounts_under(lxc_path(server))) == 3
        attach(server, names[0], "echo old > /etc/left-by-the-old-worker")
        worker = server.worker_pid()
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: server.worker_pid() not in (None, worker), 30, message="a new worker")
        server.wait_healthy()
        assert any(e.get("event") == "lxc_leftover_cleaned" and e.get("container") == names[0]
                   for e in server.log_events())
        assert not alive(before)
        # the finished revision boots again: one container, mounted once, in cgroups of its own name
        wait_until(lambda: containers(server)[names[0]]["status"] == "READY", 20, message="READY again")
        now = init_pid(server, names[0])
        assert now and now != before
        assert "No such file" in attach(server, names[0], "cat /etc/left-by-the-old-worker")  # a fresh boot
        assert len(mounts_under(lxc_path(server))) == 3 and len(loops_backed_under(server.base)) == 1
        assert not [c for c in payload_cgroups(names) if c.endswith("-1")]
        assert server.stop() == 0
        assert_clean(server, names)
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


def test_a_crashing_container_is_recovered_and_releases_its_mounts(image):
    server = GunicornServer(short_tempdir(), ENV)
    name = unique("flaky")
    try:
        server.start()
        state, files = revision(image, {name: {
            "args": "exit 0.3 3", "status_goal": "STARTED", "group": "app",
            "auto_recovery": {"policy": "on-failure", "max_retries": 0, "retry_delay": 0.2},
        }})
        install(server, "locals/flaky", state, files)
        wait_until(lambda: containers(server)[name]["auto_recovery"]["current_retries"] >= 2, 20,
                   message="two recoveries")
        assert console(server, "locals/flaky", name).count(f"pvdemo {name}: exiting with 3") >= 2
        # The init's own status, not lxc-start's (which reads 0 for an exit 3).
        codes = {e.get("exit_code") for e in server.log_events() if e.get("event") == "container_recovering"}
        assert codes == {3}
        assert len(mounts_under(lxc_path(server))) <= 3 and len(loops_backed_under(server.base)) <= 1
        assert server.stop() == 0
        assert_clean(server, [name])
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


def test_runtime_is_chosen_by_setting(device):
    events = [e for e in device.server.log_events() if e.get("event") == "container_runtime"]
    assert [e["runtime"] for e in events] == ["LxcRuntime"]
    assert json.loads(device.server.request("GET", "/containers")[2])  # and it serves them


def test_a_container_ignoring_the_halt_signal_is_killed_after_the_stop_timeout(image):
    server = GunicornServer(short_tempdir(), dict(ENV, PVCORE_STOP_TIMEOUT="1"))
    name = unique("stubborn")
    try:
        server.start()
        state, files = revision(image, {name: {"args": "stubborn", "status_goal": "STARTED", "group": "app"}})
        install(server, "locals/stubborn", state, files)
        pid = init_pid(server, name)
        assert pid
        t0 = time.monotonic()
        assert server.request("PUT", f"/containers/{name}", b'{"action":"stop"}')[0] == 200
        wait_until(lambda: containers(server)[name]["status"] == "STOPPED", 15)
        assert time.monotonic() - t0 >= 1.0  # it was asked first, and waited for
        assert not alive(pid) and "halting" not in console(server, "locals/stubborn", name)
        assert mounts_under(lxc_path(server)) == [] and loops_backed_under(server.base) == []
        assert server.stop() == 0
        assert_clean(server, [name])
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


STRAY = r"""
import os, socket, sys
with open(os.path.join(sys.argv[1], "cgroup.procs"), "w") as fh:
    fh.write(str(os.getpid()))
with socket.socket(socket.AF_UNIX) as sock:
    sock.connect(sys.argv[2])
    sock.sendall(b"GET /containers HTTP/1.0\r\nHost: localhost\r\n\r\n")
    print(sock.makefile("rb").readline().decode().strip())
"""


def test_a_process_in_a_foreign_lxc_cgroup_is_unknown_never_the_host(device):
    # root like pvcore, outside its tree, in an LXC payload cgroup no running container owns:
    # "host by uid" must not apply (it would be mgmt)
    cgroup = os.path.join("/sys/fs/cgroup/unified", f"lxc.payload.{unique('stray')}")
    if not os.path.isdir("/sys/fs/cgroup/unified"):
        cgroup = os.path.join("/sys/fs/cgroup/pids", os.path.basename(cgroup))
    os.mkdir(cgroup)
    try:
        out = subprocess.run([sys.executable, "-c", STRAY, cgroup, device.server.socket],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.startswith("HTTP/1.0 500"), (out.stdout, out.stderr)
        # the same process outside that cgroup is the host
        assert device.server.request("GET", "/containers")[0] == 200
    finally:
        wait_until(lambda: not _rmdir_failed(cgroup), 5)


def _rmdir_failed(path):
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return False
