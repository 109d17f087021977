"""Loop devices a container attached itself (``losetup`` inside), so they go with it.

The kernel does not record who attached a loop device, and the path it
shows (``/sys/block/loopN/loop/backing_file``) is relative to the attacher's
root. A loop device is the container's when its backing file — the
``(st_dev, st_ino)`` that ``LOOP_GET_STATUS64`` reports — is either

* on a filesystem that is the container's own: its overlay, its per-start
  tmpfs, or anything mounted only in its mount namespace (its ``/dev``
  tmpfs, a tmpfs it mounted). Those device numbers are recorded while the
  container runs, because its namespace is gone once it stopped; or
* the inode its backing path names inside the container's root — seen
  from its init while it runs, or through pvcore's own mount of its
  overlay — resolved component by component without following a symlink
  (a tenant's symlink must never make pvcore look at a host file). Files of
  an overlay report a per-layer pseudo device, so the overlay's own device
  number does not find them.

(docs/architecture.md §7.1)
"""
from __future__ import annotations

import fcntl
import os
import struct
from typing import Collection, Iterable, List, Optional, Set, Tuple

from . import mounts

LOOP_GET_STATUS64 = 0x4C05
# struct loop_info64: lo_device, lo_inode, lo_rdevice, lo_offset, lo_sizelimit (u64), lo_number,
# lo_encrypt_type, lo_encrypt_key_size, lo_flags (u32), file name[64], crypt name[64], key[32], init[2] (u64).
_LOOP_INFO64 = struct.Struct("=QQQQQIIII64s64s32sQQ")

Backing = Tuple[int, int]  # (st_dev, st_ino) of a loop device's backing file


def attached() -> List[str]:
    """Every loop device that has a backing file now (``/dev/loopN``)."""
    try:
        names = os.listdir("/sys/block")
    except OSError:
        return []
    return sorted(f"/dev/{name}" for name in names
                  if name.startswith("loop") and os.path.exists(f"/sys/block/{name}/loop/backing_file"))


def backing(device: str) -> Optional[Backing]:
    """``(st_dev, st_ino)`` of the file behind loop ``device``, or ``None`` if it is free."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = fcntl.ioctl(fd, LOOP_GET_STATUS64, bytes(_LOOP_INFO64.size))
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = _LOOP_INFO64.unpack(info)
    return fields[0], fields[1]


def _mount_devices(mountinfo: str) -> Set[int]:
    found = set()
    try:
        with open(mountinfo) as fh:
            for line in fh:
                major, _, minor = line.split()[2].partition(":")
                found.add(os.makedev(int(major), int(minor)))
    except (OSError, ValueError, IndexError):
        pass
    return found


def private_devices(pid: int) -> Set[int]:
    """Device numbers of the filesystems mounted in ``pid``'s mount namespace and not in pvcore's."""
    theirs = _mount_devices(f"/proc/{pid}/mountinfo")
    return theirs - _mount_devices("/proc/self/mountinfo") if theirs else set()


def resolve_in_root(root: str, path: str) -> Optional[Backing]:
    """``(st_dev, st_ino)`` of ``path`` inside directory ``root``, never following a symlink; ``None`` if unreachable."""
    parts = [part for part in path.split("/") if part]
    if not parts or ".." in parts:
        return None
    try:
        fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        for part in parts:
            nxt = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
        st = os.fstat(fd)
        return st.st_dev, st.st_ino
    except OSError:
        return None
    finally:
        os.close(fd)


def of_container(roots: Iterable[str], devices: Collection[int], exclude: Iterable[str] = ()) -> List[Tuple[str, Backing]]:
    """The loop devices that are the container's (see the module docstring).

    :param roots: the container's root as directories pvcore can reach
        (``/proc/<init>/root`` while it runs, pvcore's mount of its overlay).
    :param devices: the container's own filesystems' device numbers.
    :param exclude: devices pvcore itself attached for the container (its images).
    """
    exclude, roots = set(exclude), list(roots)
    found = []
    for device in attached():
        if device in exclude:
            continue
        ident = backing(device)
        if ident is None:
            continue
        if ident[0] in devices:
            found.append((device, ident))
            continue
        path = mounts.loop_backing_file(device)
        if path and any(resolve_in_root(root, path) == ident for root in roots):
            found.append((device, ident))
    return found


def detach(device: str, ident: Backing) -> bool:
    """Detach ``device`` if it still serves ``ident`` (marked autoclear instead while something mounts it)."""
    return backing(device) == ident and mounts.clear_loop(device)
