"""Durable file writes: nothing acknowledged is lost, nothing torn is seen."""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import List, Mapping, Optional, Union


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


def write_tree(root: str, files: Mapping[str, Union[bytes, str]], mode: int = 0o644) -> List[str]:
    """Fill the new, empty directory ``root`` with ``files``: relative path → bytes, or a file to copy.

    For per-start trees a runtime builds (a container's configuration
    overlay): nothing is fsynced, and since only this function writes under
    ``root``, no path it opens can be a symlink planted by someone else —
    files are still created with ``O_EXCL | O_NOFOLLOW``, directories are
    checked, and a path with an empty, ``.`` or ``..`` segment is refused.

    :return: the paths skipped (unsafe, or in conflict with another one:
        ``a`` a file and ``a/b`` too).
    """
    skipped = []
    for rel in sorted(files):
        parts = rel.split("/")
        if any(part in ("", ".", "..") for part in parts) or "\0" in rel:
            skipped.append(rel)
            continue
        parent = root
        try:
            for part in parts[:-1]:
                parent = os.path.join(parent, part)
                try:
                    os.mkdir(parent, 0o755)
                except FileExistsError:
                    if os.path.islink(parent) or not os.path.isdir(parent):
                        raise
            source = files[rel]
            fd = os.open(os.path.join(parent, parts[-1]),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
            with os.fdopen(fd, "wb") as out:
                if isinstance(source, bytes):
                    out.write(source)
                else:
                    with open(source, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
            os.chmod(os.path.join(parent, parts[-1]), mode)  # whatever the umask
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            skipped.append(rel)
    return skipped
