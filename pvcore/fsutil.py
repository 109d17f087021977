"""Durable file writes: nothing acknowledged is lost, nothing torn is seen."""
from __future__ import annotations

import os
import tempfile
from typing import Optional, Union


def fsync_dir(path: str) -> None:
    """fsync a directory so a rename or unlink in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: Union[bytes, str], mode: int = 0o644, durable: bool = True,
                 tmp_dir: Optional[str] = None) -> None:
    """Write ``data`` to ``path`` via a temp file, fsync and rename.

    Readers see either the old content or the new, never a mix; the temp
    file lives in the same directory (same filesystem, so rename is atomic)
    and carries a ``.tmp`` suffix so sweepers can recognise leftovers.
    ``durable=False`` skips the fsyncs, for volatile trees rebuilt at start.
    ``tmp_dir`` (same filesystem) holds the temp file instead, for directories
    where every name is meaningful (metadata keys may look like temp files).
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=tmp_dir or directory, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_dir(directory)


def sweep_temp_files(directory: str) -> int:
    """Remove ``.*.tmp`` leftovers of :func:`atomic_write` in ``directory``."""
    removed = 0
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    for name in names:
        if name.startswith(".") and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(directory, name))
                removed += 1
            except OSError:
                pass
    return removed
