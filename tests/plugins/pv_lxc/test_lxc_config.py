"""The LXC config pv_lxc writes from a container's own lxc.container.conf (pure; no root needed)."""
from pv_lxc.config import compose, config_keys, rewrite_volume

PVR_CONF = """\
lxc.tty.max = 8
lxc.rootfs.path = overlayfs:/volumes/app/root.squashfs:/volumes/app/lxc-overlay/upper
lxc.console.logfile = /pantavisor/logs/app/console.log
lxc.log.file = /storage/logs/app/lxc.log
lxc.init.cmd = /sbin/init
lxc.mount.entry = /volumes/app/docker--data var/lib/docker none bind,rw,create=dir 0 0
lxc.mount.entry = /volumes/other/x mnt/x none bind 0 0
lxc.mount.auto = proc sys:rw cgroup
lxc.signal.halt = SIGTERM
"""
VOLUMES = {"root.squashfs": "/run/lxc/app/mnt/root.squashfs", "docker--data": "/storage/disks/perm/app/docker--data"}


def test_pvcore_owns_rootfs_console_and_log_and_rewrites_volume_sources():
    text = compose("app", PVR_CONF, "/run/lxc/app/rootfs", VOLUMES, "/run/pv-ctrl")
    keys = config_keys(text)
    assert keys["lxc.rootfs.path"] == ["dir:/run/lxc/app/rootfs"]
    assert keys["lxc.console.path"] == ["none"]
    assert "lxc.console.logfile" not in keys and "lxc.log.file" not in keys
    assert keys["lxc.mount.entry"] == [
        "/storage/disks/perm/app/docker--data var/lib/docker none bind,rw,create=dir 0 0",
        "/volumes/other/x mnt/x none bind 0 0",  # another container's volume is not ours to give
        "/run/pv-ctrl pantavisor/pv-ctrl none bind,create=file 0 0",
    ]
    # the container's own choices are kept, after pvcore's defaults so they win
    assert keys["lxc.mount.auto"] == ["proc sys:rw cgroup"]
    assert keys["lxc.signal.halt"] == ["SIGTERM"] and keys["lxc.init.cmd"] == ["/sbin/init"]
    assert keys["lxc.tty.max"] == ["0", "8"]
    assert keys["lxc.uts.name"][0] == "app"


def test_an_empty_config_gets_working_defaults():
    keys = config_keys(compose("c", "", "/r", {}, "/s"))
    assert keys["lxc.mount.auto"] == ["proc:mixed sys:ro cgroup:mixed"]
    assert keys["lxc.rootfs.path"] == ["dir:/r"]


def test_rewrite_volume_keeps_subpaths():
    assert rewrite_volume("/volumes/app/docker--data/sub", "app", VOLUMES) == VOLUMES["docker--data"] + "/sub"
    assert rewrite_volume("/volumes/app/unknown", "app", VOLUMES) == "/volumes/app/unknown"
    assert rewrite_volume("/etc/hosts", "app", VOLUMES) == "/etc/hosts"
