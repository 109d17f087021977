"""Loop devices and mounts, straight through the kernel (no ``losetup``/``mount`` processes).

A squashfs object is attached read-only to a free loop device with the
*autoclear* flag and mounted from it: once the mount is gone (and our fd is
closed) the kernel releases the loop device by itself, so a crash between the
two steps cannot leak one. :func:`release_loop` still detaches a recorded
device explicitly, for the rare case someone else held it open.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import struct
import time
from typing import List, Optional, Tuple

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MNT_DETACH = 2

LOOP_CLR_FD = 0x4C01
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
# struct loop_config { u32 fd; u32 block_size; struct loop_info64 info; u64 reserved[8]; }
# loop_info64: 5×u64, 4×u32 (lo_flags is the 4th), file name[64], crypt name[64], key[32], 2×u64.
_LOOP_CONFIG = struct.Struct("=II QQQQQ IIII 64s64s32s QQ 8Q")


class MountError(OSError):
    """A loop attach, mount or unmount failed (``errno`` and the target in the message)."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise MountError(err, f"{what}: {os.strerror(err)}")


def attach_loop(path: str, retries: int = 20) -> Tuple[str, int]:
    """Attach file ``path`` read-only (autoclear) to a free loop device.

    :return: ``("/dev/loopN", fd)``. The caller mounts the device, then closes
        ``fd``: with autoclear, the kernel frees the device at the last close
        once nothing mounts it.
    """
    backing = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for _ in range(retries):
            ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
            try:
                number = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
            finally:
                os.close(ctl)
            device = f"/dev/loop{number}"
            fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
            name = os.path.basename(path).encode()[:63]
            config = _LOOP_CONFIG.pack(backing, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                       LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR, name, b"", b"", 0, 0,
                                       *([0] * 8))
            try:
                fcntl.ioctl(fd, LOOP_CONFIGURE, config)
            except OSError as exc:
                os.close(fd)
                if exc.errno == errno.EBUSY:  # another process took it between GET_FREE and CONFIGURE
                    time.sleep(0.01)
                    continue
                raise MountError(exc.errno, f"loop configure {device} for {path}: {exc.strerror}") from None
            return device, fd
        raise MountError(errno.EBUSY, f"no free loop device for {path}")
    finally:
        os.close(backing)


def mount_squashfs(image: str, target: str) -> str:
    """Mount squashfs file ``image`` read-only at ``target`` through a loop device; return the device."""
    device, fd = attach_loop(image)
    try:
        _check(_libc.mount(device.encode(), target.encode(), b"squashfs", MS_RDONLY | MS_NODEV, None),
               f"mount {image} ({device}) at {target}")
    finally:
        os.close(fd)
    return device


def mount_tmpfs(target: str, size: str) -> None:
    """Mount a new tmpfs of at most ``size`` (``64m``, ``25%``) at ``target`` (nosuid, nodev)."""
    options = f"mode=0755,size={size}".encode()
    _check(_libc.mount(b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options),
           f"mount tmpfs (size={size}) at {target}")


def mount_overlay(lowers: List[str], upper: str, work: str, target: str) -> None:
    """Mount an overlay of read-only ``lowers`` (topmost first) and writable ``upper`` at ``target``."""
    options = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work}".encode()
    _check(_libc.mount(b"overlay", target.encode(), b"overlay", 0, options), f"mount overlay at {target}")


def unmount(target: str) -> bool:
    """Unmount ``target`` (lazily if busy); False if it was not mounted."""
    if _libc.umount2(target.encode(), 0) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return False
    if err == errno.EBUSY:
        _check(_libc.umount2(target.encode(), MNT_DETACH), f"umount -l {target}")
        return True
    raise MountError(err, f"umount {target}: {os.strerror(err)}")


def mounted_under(prefix: str) -> List[str]:
    """Mount points at or below ``prefix``, deepest first (from ``/proc/self/mountinfo``)."""
    prefix = os.path.realpath(prefix).rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def loop_backing_file(device: str) -> Optional[str]:
    """The file behind loop ``device`` (``/dev/loopN``), or None if it is free."""
    name = os.path.basename(device)
    try:
        with open(f"/sys/block/{name}/loop/backing_file") as fh:
            return fh.read().strip()
    except OSError:
        return None


def release_loop(device: str, backing: str) -> bool:
    """Detach ``device`` if it still serves ``backing`` (never somebody else's device)."""
    if loop_backing_file(device) != backing:
        return False
    return clear_loop(device)


def clear_loop(device: str) -> bool:
    """``LOOP_CLR_FD`` on ``device``: detached, or marked autoclear while something still uses it."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.ioctl(fd, LOOP_CLR_FD)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
