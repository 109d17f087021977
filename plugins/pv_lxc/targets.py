"""Mount targets inside a container's rootfs, made by pvcore so that LXC never follows a symlink out of it.

LXC's ``create=dir`` / ``create=file`` mount options make a missing target
with a plain ``mkdir``/``open`` on the host path ``<rootfs>/<target>``: a
symlink the container left in its writable layer (``/pantavisor`` → a host
directory, with a ``permanent`` overlay) is followed on the host, and LXC
creates the target there before its own checks refuse the mount. So before
``lxc-start`` — while no process of the container runs, so nothing can race
us — pvcore:

* makes ``/pantavisor`` and its entries real (:func:`ensure_pantavisor`): a
  symlink or anything of the wrong type there is the container's own leftover
  in its own writable layer, and is replaced;
* makes every other ``create=`` target that is missing itself, one path
  component at a time, never following a symlink (:func:`prepare`), and
  drops the ``create=`` option, so LXC only mounts on what exists (and its
  mount refuses symlinks leaving the rootfs).

docs/protocol.md §D4.9.
"""
from __future__ import annotations

import os
import stat
from typing import List, Mapping, Optional, Tuple

import structlog

log = structlog.get_logger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _remove_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` in ``dir_fd`` whatever it is (a tree too), never following a symlink."""
    st = os.lstat(name, dir_fd=dir_fd)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        for entry in list(os.scandir(fd)):
            _remove_at(fd, entry.name)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def _ensure_at(dir_fd: int, name: str, directory: bool) -> None:
    """``name`` in ``dir_fd`` is a real directory (or regular file); anything else is replaced."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        st = None
    if st is not None and (stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)):
        return
    if st is not None:
        log.warning("lxc_mount_target_replaced", target=name, mode=oct(st.st_mode))
        _remove_at(dir_fd, name)
    if directory:
        os.mkdir(name, 0o755, dir_fd=dir_fd)
    else:
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=dir_fd))


def ensure_pantavisor(rootfs: str, entries: Mapping[str, bool]) -> None:
    """Make ``<rootfs>/pantavisor`` a real directory holding ``entries`` (name → is a directory)."""
    root = os.open(rootfs, _DIR_FLAGS)
    try:
        _ensure_at(root, "pantavisor", True)
        top = os.open("pantavisor", _DIR_FLAGS, dir_fd=root)
        try:
            for name, directory in entries.items():
                _ensure_at(top, name, directory)
        finally:
            os.close(top)
    finally:
        os.close(root)


def prepare(rootfs: str, target: str, kind: str) -> bool:
    """Create the missing ``target`` (``dir`` or ``file``) of the rootfs; False if it cannot be made
    without following a symlink or going through a non-directory (then LXC finds it missing)."""
    parts = [p for p in target.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return False
    fd = os.open(rootfs, _DIR_FLAGS)
    try:
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            try:
                st: Optional[os.stat_result] = os.lstat(part, dir_fd=fd)
            except FileNotFoundError:
                st = None
            if st is None:
                if last and kind == "file":
                    os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                     0o644, dir_fd=fd))
                    return True
                os.mkdir(part, 0o755, dir_fd=fd)
            elif last:
                return not stat.S_ISLNK(st.st_mode)
            elif not stat.S_ISDIR(st.st_mode):
                return False
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def strip_create(options: str) -> Tuple[str, Optional[str]]:
    """Mount options without ``create=…``, and what it asked for (``dir``, ``file`` or None)."""
    kept: List[str] = []
    kind = None
    for option in options.split(","):
        if option.startswith("create="):
            kind = option[len("create="):]
        else:
            kept.append(option)
    return ",".join(kept), kind


def prepare_config(rootfs: str, text: str) -> str:
    """An LXC config whose ``lxc.mount.entry`` ``create=`` targets were made here, the option dropped
    (see the module docstring)."""
    lines = []
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        fields = value.split()
        if eq and key.strip() == "lxc.mount.entry" and len(fields) >= 4 and "create=" in fields[3]:
            fields[3], kind = strip_create(fields[3])
            if kind in ("dir", "file") and not prepare(rootfs, fields[1], kind):
                log.warning("lxc_mount_target_not_made", target=fields[1], kind=kind)
            line = "lxc.mount.entry = " + " ".join(fields)
        lines.append(line)
    return "\n".join(lines) + "\n"
