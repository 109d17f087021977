"""LXC containers' storage by persistence, over the real socket (docs/protocol.md §D4.8).

``boot`` volumes and the ``lxc-overlay`` upper layer are fresh at every start — a crash restart,
an API restart, a revision switch — and gone once the container is STOPPED; ``revision`` volumes
belong to their revision; ``permanent`` ones survive everything. The container counts its starts in
each kind of storage, and changes a file of its squashfs: an update that only replaces the squashfs
must show the new image's file, not the old image's modified copy.
"""
import os
import shutil
import signal

import pytest

from lxc_device import assert_clean, attach, containers, init_pid, install, lxc_path, mounts_under, revision, \
    unavailable, unique
from pv_lxc import demo
from pvcore.testing import GunicornServer, short_tempdir, wait_until

REASON = unavailable()
pytestmark = [pytest.mark.gunicorn, pytest.mark.skipif(REASON is not None, reason=f"LXC runtime: {REASON}")]

ENV = {"PVCORE_CONTAINER_RUNTIME": "lxc", "PVCORE_STOP_TIMEOUT": "3", "PVCORE_UPDATE_COMMIT_DELAY": "0.3",
       "PVCORE_LXC_BOOT_SIZE": "8m"}
STORAGE = {"lxc-overlay": {"persistence": "boot"}, "data": {"persistence": "permanent"},
           "rev": {"persistence": "revision"}, "scratch": {"persistence": "boot"}}
CONF = demo.lxc_conf("ready") + (
    b"lxc.mount.entry = /volumes/{name}/rev rev none bind,create=dir 0 0\n"
    b"lxc.mount.entry = /volumes/{name}/scratch scratch none bind,create=dir 0 0\n")
#: One more start: each counter + 1; prints "<rootfs> <permanent> <revision> <boot volume> <image file>".
COUNT = ('for f in /etc/count /data/count /rev/count /scratch/count; do '
         'n=$(cat $f 2>/dev/null || echo 0); n=$((n+1)); echo $n > $f; printf "%s " $n; done; cat /etc/version')


def count(server, name):
    out = attach(server, name, COUNT).split()
    return [int(n) for n in out[:4]] + out[4:]


def running_again(server, name, before):
    """Wait for container ``name`` to run READY with another init than ``before``."""
    def ready():
        pid = init_pid(server, name)
        return pid not in (None, before) and containers(server)[name]["status"] == "READY" and pid
    return wait_until(ready, 30, message=f"{name} READY again")


def test_boot_storage_is_fresh_at_every_start_and_gone_when_stopped():
    workdir = short_tempdir("pvimg")
    server = GunicornServer(short_tempdir(), ENV)
    name = unique("count")
    try:
        image_a = demo.build_rootfs(os.path.join(workdir), {"etc/version": b"a\n"})
        os.makedirs(os.path.join(workdir, "b"))
        image_b = demo.build_rootfs(os.path.join(workdir, "b"), {"etc/version": b"b\n"})
        server.start()
        fields = {"group": "app", "roles": [], "status_goal": "READY", "conf": CONF, "storage": STORAGE,
                  "auto_recovery": {"policy": "on-failure", "max_retries": 10, "retry_delay": 0.2}}
        state, files = revision(image_a, {name: fields})
        assert install(server, "locals/a", state, files)["status"] in ("UPDATED", "DONE")
        pid = running_again(server, name, None)
        assert count(server, name) == [1, 1, 1, 1, "a"]
        attach(server, name, "echo modified > /etc/version")
        assert count(server, name) == [2, 2, 2, 2, "modified"]  # within one start, everything stays

        os.kill(pid, signal.SIGKILL)  # a crash: auto-recovery starts it again
        pid = running_again(server, name, pid)
        assert count(server, name) == [1, 3, 3, 1, "a"]

        assert server.request("PUT", f"/containers/{name}", b'{"action":"restart"}')[0] == 200
        pid = running_again(server, name, pid)
        assert count(server, name) == [1, 4, 4, 1, "a"]

        # STOPPED: its boot storage is gone, not kept anywhere on the host
        assert server.request("PUT", f"/containers/{name}", b'{"action":"stop"}')[0] == 200
        wait_until(lambda: containers(server)[name]["status"] == "STOPPED", 15)
        assert mounts_under(os.path.join(lxc_path(server), name)) == []
        assert not os.path.exists(os.path.join(lxc_path(server), name))
        kept = sorted(os.path.relpath(os.path.join(d, f), server.storage_dir)
                      for d, _, fs in os.walk(os.path.join(server.storage_dir, "disks")) for f in fs)
        assert kept == [f"disks/perm/{name}/data/count", f"disks/rev/locals/a/{name}/rev/count"]
        assert server.request("PUT", f"/containers/{name}", b'{"action":"start"}')[0] == 200
        pid = running_again(server, name, pid)
        assert count(server, name) == [1, 5, 5, 1, "a"]
        attach(server, name, "echo modified > /etc/version")

        # an update that only changes the squashfs: the new image's file, the new revision's storage
        state, files = revision(image_b, {name: fields})
        assert install(server, "locals/b", state, files)["status"] in ("UPDATED", "DONE")
        running_again(server, name, pid)
        assert count(server, name) == [1, 6, 1, 1, "b"]
        with open(os.path.join(server.storage_dir, "disks", "rev", "locals", "a", name, "rev", "count")) as fh:
            assert fh.read() == "5\n"  # the old revision's storage is its own
        # boot storage is bounded (lxc_boot_size): a full one is ENOSPC inside, nothing outside
        out = attach(server, name, "head -c 9000000 /dev/zero > /scratch/big || echo FULL; rm /scratch/big; "
                                   "head -c 9000000 /dev/zero > /var/big || echo FULL; echo size=$(wc -c < /var/big)")
        assert out.count("FULL") == 2 and int(out.split("size=")[1].split()[0]) <= 8 << 20, out
        assert server.stop() == 0
        assert_clean(server, [name])
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_container_cannot_aim_its_pantavisor_mounts_at_the_host():
    """A container whose writable layer is permanent replaces /pantavisor by a symlink to a host
    path: at its next start the views must land inside the container, never on the host."""
    workdir = short_tempdir("pvimg")
    trap = short_tempdir("pvtrap")
    server = GunicornServer(short_tempdir(), ENV)
    name = unique("trap")
    try:
        image = demo.build_rootfs(workdir)
        server.start()
        storage = {"lxc-overlay": {"persistence": "permanent"}, "data": {"persistence": "permanent"}}
        conf = demo.lxc_conf("ready") + b"lxc.mount.entry = /dev/null planted/file none bind,create=file 0 0\n"
        # its own recovery: no 30 s stable_timeout of the app group's to wait for before UPDATED
        state, files = revision(image, {name: {"group": "app", "roles": [], "status_goal": "READY",
                                               "storage": storage, "conf": conf,
                                               "auto_recovery": {"policy": "on-failure", "max_retries": 5}}})
        assert install(server, "locals/trap", state, files)["status"] in ("UPDATED", "DONE")
        pid = running_again(server, name, None)
        # what it leaves in its writable layer (done from the host: inside, /pantavisor's mounts
        # keep a container from replacing it while it runs)
        assert server.request("PUT", f"/containers/{name}", b'{"action":"stop"}')[0] == 200
        wait_until(lambda: containers(server)[name]["status"] == "STOPPED", 15)
        planted = os.path.join(server.storage_dir, "disks", "perm", name, "lxc-overlay", "upper", "pantavisor")
        shutil.rmtree(planted)
        os.symlink(trap, planted)
        assert server.request("PUT", f"/containers/{name}", b'{"action":"start"}')[0] == 200
        wait_until(lambda: init_pid(server, name) not in (None, pid) or
                   containers(server)[name]["status"] in ("STOPPED", "RECOVERING"), 30, message="started")
        wait_until(lambda: containers(server)[name]["status"] != "STARTING", 20)
        # it runs, with the real /pantavisor
        wait_until(lambda: containers(server)[name]["status"] == "READY", 20, message="READY")
        assert attach(server, name, "readlink /pantavisor; ls /pantavisor").split() == \
            ["device-meta", "logs", "pv-ctrl", "user-meta"]
        # the same through a target of its own config (create=file): the start fails, safely
        assert attach(server, name, "ls /planted/file").strip() == "/planted/file"
        assert server.request("PUT", f"/containers/{name}", b'{"action":"stop"}')[0] == 200
        wait_until(lambda: containers(server)[name]["status"] == "STOPPED", 15)
        planted = os.path.join(server.storage_dir, "disks", "perm", name, "lxc-overlay", "upper", "planted")
        shutil.rmtree(planted)
        os.symlink(trap, planted)
        assert server.request("PUT", f"/containers/{name}", b'{"action":"start"}')[0] == 200
        wait_until(lambda: any(e.get("event") == "container_start_failed" and e.get("container") == name
                               for e in server.log_events()), 20, message="the start to fail")
        assert os.listdir(trap) == [] and mounts_under(trap) == []
        assert server.stop() == 0
        assert_clean(server, [name])
        assert os.listdir(trap) == []
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
        os.rmdir(trap)
