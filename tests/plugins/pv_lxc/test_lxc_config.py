"""The LXC config pv_lxc writes from a container's own lxc.container.conf (pure; no root needed)."""
import pytest

from pv_lxc import memory, tmpfs_size
from pv_lxc.config import Hardening, compose, config_keys, rewrite_volume

#: the baseline as on a v1 memory hierarchy with swap accounting, a 64 MiB limit, in a shared parent
V1 = Hardening(pids_max=1024, memory_max=64 << 20, memory_cgroup="cgroup", memory_swap=True,
               cgroup_dir="pvcore-lxc/0123/tenants", monitor_dir="pvcore-lxc/0123/monitors")

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
        "/run/pv-ctrl pantavisor/pv-ctrl none bind,ro,create=file 0 0",
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
    for hardening in (None, V1):
        text = compose("c", "", "/r", {}, "/s", hardening=hardening)
        assert "unconfined" not in text and "lxc.apparmor" not in text
    asked = compose("c", "lxc.apparmor.profile = unconfined\n", "/r", {}, "/s", hardening=V1)
    assert config_keys(asked)["lxc.apparmor.profile"] == ["unconfined"]  # its own choice, kept


def test_a_mgmt_container_gets_its_config_without_the_baseline():
    keys = config_keys(compose("c", PVR_CONF, "/r", VOLUMES, "/s", hardening=None))
    for key in ("lxc.cap.drop", "lxc.cgroup.devices.deny", "lxc.cgroup2.devices.deny", "lxc.seccomp.profile"):
        assert key not in keys
    assert not any(key.endswith("pids.max") or ".memory." in key or key.startswith("lxc.cgroup.dir")
                   for key in keys)  # no memory limit, and LXC's own cgroup place: not in the tenants' budget


def test_a_non_mgmt_container_gets_the_baseline_before_its_own_lines():
    text = compose("c", "lxc.cgroup.devices.allow = b 7:* rwm\nlxc.mount.auto = proc sys:rw cgroup:mixed\n",
                   "/r", {}, "/s", hardening=V1)
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
    keys = config_keys(compose("c", "lxc.cap.keep = sys_admin\n", "/r", {}, "/s", hardening=V1))
    assert "lxc.cap.drop" not in keys and keys["lxc.cap.keep"] == ["sys_admin"]  # LXC refuses both


def test_a_zero_pids_limit_means_none():
    keys = config_keys(compose("c", "", "/r", {}, "/s", hardening=Hardening(pids_max=0)))
    assert not any(key.endswith("pids.max") for key in keys) and "lxc.cap.drop" in keys
    assert keys["lxc.mount.auto"] == ["proc:mixed sys:ro", "cgroup:ro"]


# -- memory (docs/architecture.md §7.1) ------------------------------------------------


def test_the_memory_limit_uses_the_v1_keys_on_a_v1_memory_hierarchy():
    lines = _lines(compose("app", "", "/r", {}, "/s", hardening=V1))
    limit = lines.index("lxc.cgroup.memory.limit_in_bytes = 67108864")
    # memsw after the limit (LXC applies in order; memsw may never be below the limit)
    assert lines.index("lxc.cgroup.memory.memsw.limit_in_bytes = 67108864") == limit + 1
    assert not any(line.startswith("lxc.cgroup2.memory") for line in lines)
    # in the tenants' parent, keeping LXC's leaf names
    assert "lxc.cgroup.dir.container = pvcore-lxc/0123/tenants/lxc.payload.app" in lines
    assert "lxc.cgroup.dir.monitor = pvcore-lxc/0123/monitors/lxc.monitor.app" in lines


def test_the_memory_limit_uses_the_v2_keys_on_a_v2_memory_hierarchy():
    keys = config_keys(compose("app", "", "/r", {}, "/s", hardening=Hardening(
        memory_max=1 << 30, memory_cgroup="cgroup2", memory_swap=True)))
    assert keys["lxc.cgroup2.memory.max"] == [str(1 << 30)] and keys["lxc.cgroup2.memory.swap.max"] == ["0"]
    assert not any(key.startswith("lxc.cgroup.memory") or key.startswith("lxc.cgroup.dir") for key in keys)
    # without swap accounting, no swap line (LXC would refuse a key the kernel does not have)
    keys = config_keys(compose("app", "", "/r", {}, "/s", hardening=Hardening(memory_max=4096, memory_cgroup="cgroup2")))
    assert keys["lxc.cgroup2.memory.max"] == ["4096"] and "lxc.cgroup2.memory.swap.max" not in keys


@pytest.mark.parametrize("own", ["lxc.cgroup.memory.limit_in_bytes = 1G", "lxc.cgroup2.memory.max = max",
                                 "lxc.cgroup.memory.memsw.limit_in_bytes = 2G"])
def test_a_containers_own_memory_limit_wins(own):
    text = compose("app", own + "\n", "/r", {}, "/s", hardening=V1)
    key, value = (part.strip() for part in own.split("="))
    keys = config_keys(text)
    assert keys[key] == [value]  # its own, alone: no memsw of ours below a larger limit of its own
    assert not any(".memory." in k and k != key for k in keys)
    assert "lxc.cgroup.dir.container" in keys  # still within the tenants' budget


def test_other_memory_keys_of_its_own_keep_the_baseline_limit():
    keys = config_keys(compose("app", "lxc.cgroup.memory.swappiness = 0\n", "/r", {}, "/s", hardening=V1))
    assert keys["lxc.cgroup.memory.limit_in_bytes"] == ["67108864"]


def test_no_memory_limit_when_it_is_zero_or_the_machine_has_no_memory_controller():
    for hardening in (Hardening(memory_max=0, memory_cgroup="cgroup"), Hardening(memory_max=4096, memory_cgroup="")):
        keys = config_keys(compose("app", "", "/r", {}, "/s", hardening=hardening))
        assert not any(".memory." in key for key in keys) and "lxc.cap.drop" in keys
        assert "lxc.cgroup.dir.container" not in keys  # no budget given: LXC's default place


@pytest.mark.parametrize("own", ["lxc.cgroup.dir = mine", "lxc.cgroup.relative = 1"])
def test_a_container_that_places_its_own_cgroup_stays_out_of_the_shared_parent(own):
    keys = config_keys(compose("app", own + "\n", "/r", {}, "/s", hardening=V1))
    assert "lxc.cgroup.dir.container" not in keys and "lxc.cgroup.dir.monitor" not in keys
    assert keys["lxc.cgroup.memory.limit_in_bytes"] == ["67108864"]  # its own limit still applies


@pytest.mark.parametrize("text, expected", [("", 0), ("0", 0), ("512M", 512 << 20), ("64m", 64 << 20),
                                            ("1G", 1 << 30), ("12k", 12288), ("10000", 8192),
                                            ("25%", 1 << 30), ("100%", 4 << 30)])
def test_memory_sizes_are_bytes_or_a_share_of_ram(text, expected):
    assert memory.to_bytes(text, total=4 << 30) == expected


@pytest.mark.parametrize("text", ["0%", "101%", "-1", "1t", "64 m", "1.5G", "max"])
def test_memory_sizes_refuse_anything_else(text):
    with pytest.raises(ValueError):
        memory.memory_size(text)


def test_pantavisor_views_are_read_only_binds():
    text = compose("app", "", "/r", {}, "/run/pv-ctrl", [("/run/user-meta.app", "user-meta"), ("/s/logs", "logs")])
    assert config_keys(text)["lxc.mount.entry"] == [
        "/run/pv-ctrl pantavisor/pv-ctrl none bind,ro,create=file 0 0",
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
