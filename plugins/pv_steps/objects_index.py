"""The object-reference index of a revision: ``<trail>/.pv/objects``.

Written (atomically: temp file, fsync, rename) when a revision's state is
stored, so garbage collection and LOCAL_RUN learn which objects a revision
references without parsing its state JSON. The first line names the state
file the index describes (inode, size, mtime in ns: a state is only ever
replaced by a rename, which gives it a new inode); an index that does not
match its state, or is missing or torn, is ignored and rebuilt from the
state (:meth:`pv_steps.trails.Trails.objects`)::

    pvcore-objects 1 <ino> <size> <mtime_ns>
    <sha256>
    ...
"""
from __future__ import annotations

import os
from typing import Iterable, List, Optional, Tuple

from pvcore.fsutil import atomic_write

NAME = "objects"
_MAGIC = b"pvcore-objects 1"

Fingerprint = Tuple[int, int, int]


def fingerprint(st: os.stat_result) -> Fingerprint:
    """What identifies one version of a state file."""
    return st.st_ino, st.st_size, st.st_mtime_ns


def render(state_stat: os.stat_result, objects: Iterable[str]) -> bytes:
    ino, size, mtime = fingerprint(state_stat)
    return b"%s %d %d %d\n" % (_MAGIC, ino, size, mtime) + "".join(sha + "\n" for sha in objects).encode("ascii")


def write(pv_dir: str, state_stat: os.stat_result, objects: Iterable[str]) -> None:
    """Write the index of the state file ``state_stat`` describes into ``pv_dir``, atomically."""
    os.makedirs(pv_dir, exist_ok=True)
    atomic_write(os.path.join(pv_dir, NAME), render(state_stat, objects))


def read(pv_dir: str, state_stat: os.stat_result) -> Optional[List[str]]:
    """The sha256s the index in ``pv_dir`` lists, or ``None`` if it is absent, torn or for another state."""
    try:
        with open(os.path.join(pv_dir, NAME), "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    head, _, body = data.partition(b"\n")
    if head != b"%s %d %d %d" % ((_MAGIC,) + fingerprint(state_stat)):
        return None
    # PERF: a shape check at C speed (hex digits only, a newline every 65th
    # byte and nowhere else) rather than a pattern per line.
    count = len(body) // 65
    if len(body) != 65 * count or body[64::65] != b"\n" * count or body.count(b"\n") != count \
            or body.translate(None, b"0123456789abcdef\n"):
        return None
    return body.decode("ascii").split()
