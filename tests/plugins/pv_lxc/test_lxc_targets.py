"""Mount targets pvcore makes in a rootfs before LXC runs: never through a symlink (pure; no root needed)."""
import os

from pv_lxc.targets import ensure_pantavisor, prepare, prepare_config, strip_create


def test_ensure_pantavisor_replaces_what_the_container_planted(tmp_path):
    rootfs, host = tmp_path / "rootfs", tmp_path / "host"
    rootfs.mkdir()
    host.mkdir()
    os.symlink(str(host), str(rootfs / "pantavisor"))  # a symlink to a host directory
    ensure_pantavisor(str(rootfs), {"pv-ctrl": False, "logs": True})
    top = rootfs / "pantavisor"
    assert not top.is_symlink() and top.is_dir()
    assert (top / "pv-ctrl").is_file() and (top / "logs").is_dir()
    assert os.listdir(str(host)) == []
    # entries of the wrong kind, or symlinks, inside a real /pantavisor
    os.unlink(str(top / "pv-ctrl"))
    (top / "pv-ctrl").mkdir()
    (top / "pv-ctrl" / "deep").mkdir()
    os.rmdir(str(top / "logs"))
    os.symlink(str(host), str(top / "logs"))
    ensure_pantavisor(str(rootfs), {"pv-ctrl": False, "logs": True})
    assert (top / "pv-ctrl").is_file() and not (top / "logs").is_symlink() and (top / "logs").is_dir()
    assert os.listdir(str(host)) == []
    # what is right stays as it is
    (top / "logs" / "kept").write_text("x")
    ensure_pantavisor(str(rootfs), {"pv-ctrl": False, "logs": True})
    assert (top / "logs" / "kept").read_text() == "x"


def test_prepare_makes_missing_targets_and_never_follows_a_symlink(tmp_path):
    rootfs, host = tmp_path / "rootfs", tmp_path / "host"
    rootfs.mkdir()
    host.mkdir()
    assert prepare(str(rootfs), "var/lib/docker", "dir") and (rootfs / "var" / "lib" / "docker").is_dir()
    assert prepare(str(rootfs), "/etc/resolv.conf", "file") and (rootfs / "etc" / "resolv.conf").is_file()
    assert prepare(str(rootfs), "etc/resolv.conf", "file")  # already there
    os.symlink(str(host), str(rootfs / "data"))
    assert not prepare(str(rootfs), "data/sub", "dir")
    assert not prepare(str(rootfs), "data", "dir")
    assert not prepare(str(rootfs), "../escape", "dir") and not prepare(str(rootfs), "", "dir")
    (rootfs / "file").write_text("x")
    assert not prepare(str(rootfs), "file/sub", "dir")
    assert os.listdir(str(host)) == [] and not (tmp_path / "escape").exists()


def test_prepare_config_drops_create_options(tmp_path):
    text = ("lxc.mount.entry = /src var/data none bind,create=dir,rw 0 0\n"
            "lxc.mount.entry = /dev/null etc/x none bind,create=file 0 0\n"
            "lxc.mount.entry = /src mnt none bind 0 0\n"
            "lxc.init.cmd = /sbin/init create=dir\n")
    assert prepare_config(str(tmp_path), text) == (
        "lxc.mount.entry = /src var/data none bind,rw 0 0\n"
        "lxc.mount.entry = /dev/null etc/x none bind 0 0\n"
        "lxc.mount.entry = /src mnt none bind 0 0\n"
        "lxc.init.cmd = /sbin/init create=dir\n")
    assert (tmp_path / "var" / "data").is_dir() and (tmp_path / "etc" / "x").is_file()
    assert not (tmp_path / "mnt").exists()
    assert strip_create("bind,ro,create=dir") == ("bind,ro", "dir")
