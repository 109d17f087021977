"""The LXC config pv_lxc writes from a container's own lxc.container.conf (pure; no root needed)."""
import pytest

from pv_lxc import tmpfs_size
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


# -- hardening (docs/architecture.md §7.1) -------------------------------------------


def _lines(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_pvcore_never_weakens_a_container_beyond_its_own_config():
    for hardening in (None, 1024):
        text = compose("c", "", "/r", {}, "/s", hardening=hardening)
        assert "unconfined" not in text and "lxc.apparmor" not in text
    asked = compose("c", "lxc.apparmor.profile = unconfined\n", "/r", {}, "/s", hardening=1024)
    assert config_keys(asked)["lxc.apparmor.profile"] == ["unconfined"]  # its own choice, kept


def test_a_mgmt_container_gets_its_config_without_the_baseline():
    keys = config_keys(compose("c", PVR_CONF, "/r", VOLUMES, "/s", hardening=None))
    for key in ("lxc.cap.drop", "lxc.cgroup.devices.deny", "lxc.cgroup2.devices.deny", "lxc.seccomp.profile"):
        assert key not in keys
    assert not any(key.endswith("pids.max") for key in keys)


def test_a_non_mgmt_container_gets_the_baseline_before_its_own_lines():
    text = compose("c", "lxc.cgroup.devices.allow = b 7:* rwm\nlxc.mount.auto = proc sys:rw cgroup:mixed\n",
                   "/r", {}, "/s", hardening=1024)
    lines, keys = _lines(text), config_keys(text)
    drop = keys["lxc.cap.drop"][0].split()
    assert {"sys_admin", "sys_module", "sys_rawio", "sys_boot", "sys_time", "net_admin"} <= set(drop)
    assert "mknod" not in drop and "chown" not in drop  # Docker's default set is kept
    for prefix in ("lxc.cgroup", "lxc.cgroup2"):
        assert keys[f"{prefix}.devices.deny"] == ["a"]
        assert "c 1:3 rwm" in keys[f"{prefix}.devices.allow"]
        assert not any(rule.startswith("b ") for rule in keys[f"{prefix}.devices.allow"][:-1])
    assert [value for key, value in keys.items() if key.endswith(".pids.max")] == [["1024"]]
    # the container's own grants come after the baseline, so LXC applies them last
    assert lines.index("lxc.mount.auto = cgroup:ro") < lines.index("lxc.mount.auto = proc sys:rw cgroup:mixed")
    assert lines.index("lxc.cgroup.devices.deny = a") < lines.index("lxc.cgroup.devices.allow = b 7:* rwm")
    assert keys["lxc.mount.auto"][-1] == "proc sys:rw cgroup:mixed"


def test_an_explicit_capability_keep_list_replaces_the_drop_list():
    keys = config_keys(compose("c", "lxc.cap.keep = sys_admin\n", "/r", {}, "/s", hardening=1024))
    assert "lxc.cap.drop" not in keys and keys["lxc.cap.keep"] == ["sys_admin"]  # LXC refuses both


def test_a_zero_pids_limit_means_none():
    keys = config_keys(compose("c", "", "/r", {}, "/s", hardening=0))
    assert not any(key.endswith("pids.max") for key in keys) and "lxc.cap.drop" in keys
    assert keys["lxc.mount.auto"] == ["proc:mixed sys:ro", "cgroup:ro"]


def test_pantavisor_views_are_read_only_binds():
    text = compose("app", "", "/r", {}, "/run/pv-ctrl", [("/run/user-meta.app", "user-meta"), ("/s/logs", "logs")])
    assert config_keys(text)["lxc.mount.entry"] == [
        "/run/pv-ctrl pantavisor/pv-ctrl none bind,create=file 0 0",
        "/run/user-meta.app pantavisor/user-meta none bind,ro,nosuid,nodev,noexec,create=dir 0 0",
        "/s/logs pantavisor/logs none bind,ro,nosuid,nodev,noexec,create=dir 0 0",
    ]


@pytest.mark.parametrize("text", ["25%", "100%", "64m", "1G", "1048576"])
def test_boot_size_takes_what_tmpfs_takes(text):
    assert tmpfs_size(text) == text


@pytest.mark.parametrize("text", ["0", "0%", "101%", "", "64 m", "1t", "size=1m,mode=777", "-1"])
def test_boot_size_refuses_anything_else(text):
    with pytest.raises(ValueError):
        tmpfs_size(text)
