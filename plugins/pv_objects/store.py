"""The content-addressed object store: ``<storage>/objects/<sha256>``.

An object only ever appears at its final path complete and verified: uploads
stream into a private temp file ``<sha>.<pid>-<random>.tmp`` while hashing,
are fsynced, and are then hard-linked into place (``os.link`` never replaces
an object another upload already placed). The pid in the temp name tells a
sweeper whether the upload can still be in flight.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

import structlog

from pvcore.errors import InsufficientStorage, PvError, Unprocessable
from pvcore.fsutil import fsync_dir
from pvcore.supervisor import pid_alive

log = structlog.get_logger(__name__)

CHUNK = 1 << 20
_SHA = re.compile(r"[0-9a-f]{64}\Z")
_TEMP = re.compile(r"(?P<sha>[0-9a-f]{64})\.(?P<pid>\d+)-[0-9a-f]+\.tmp\Z")
_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
#: A directory mtime this much in the past cannot hide a later change within
#: the same tick of the kernel's coarse clock.
_MTIME_SETTLE_NS = 1_000_000_000


def valid_sha(name: str) -> bool:
    """Exactly 64 lowercase hex characters."""
    return bool(_SHA.match(name))


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class ObjectStore:
    """Objects on disk, with uploads, downloads and garbage collection.

    :param directory: the flat ``objects/`` directory.
    :param free_space: ``f(path) -> bytes free`` (the injectable core setting).
    :param reserved_percent: share of the partition kept free for the system
        (upstream's ``PV_STORAGE_GC_RESERVED``); uploads may only use
        ``free - total * reserved_percent / 100``.
    :param clock: wall clock (``time.time``), for the GC grace period.
    :param publish: ``core.publish``: ``object.stored`` once a new object is
        durable, ``object.collected`` once GC removed one.
    """

    def __init__(self, directory: str, free_space: Callable[[str], int], reserved_percent: float = 5.0,
                 clock: Callable[[], float] = time.time, publish: Optional[Callable[[str, str, dict], Any]] = None):
        self._publish = publish or (lambda *args: None)
        self.directory = directory
        self._free_space = free_space
        self._reserved_percent = reserved_percent
        self._clock = clock
        # NOTE: held only around "is it there / touch / link / unlink" steps,
        # never while a body streams, so GC cannot delete an object between
        # an upload's existence check and its 200.
        self._lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._index: Dict[str, int] = {}
        self._index_sorted: List[Tuple[str, int]] = []
        self._index_mtime: Optional[int] = None

    # -- paths and listing ----------------------------------------------------

    def path(self, sha: str) -> str:
        return os.path.join(self.directory, sha)

    def find(self, sha: str) -> Optional[str]:
        """Path of the complete object ``sha``, or ``None``."""
        if not valid_sha(sha):
            return None
        path = self.path(sha)
        return path if os.path.isfile(path) else None

    def listing(self) -> List[Tuple[str, int]]:
        """``(sha, size)`` of every object, sorted by sha; temp files are skipped.

        PERF: objects never change once in place, so sizes are remembered and
        only new names are stat()ed; while the directory's mtime is unchanged
        (and older than the clock's granularity) the last listing is reused.
        """
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            return []
        with self._index_lock:
            settled = time.time_ns() - mtime > _MTIME_SETTLE_NS
            if settled and mtime == self._index_mtime:
                return self._index_sorted
            sizes = {}
            for name in os.listdir(self.directory):
                if not valid_sha(name):
                    continue
                size = self._index.get(name)
                if size is None:
                    try:
                        st = os.lstat(os.path.join(self.directory, name))
                    except FileNotFoundError:  # removed while listing
                        continue
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    size = st.st_size
                sizes[name] = size
            self._index = sizes
            self._index_sorted = sorted(sizes.items())
            self._index_mtime = mtime if settled else None
            return self._index_sorted

    def open(self, sha: str):
        """The object opened for reading (a binary file), or ``None`` if absent.

        The file is opened now, so a GC after this call cannot break the
        download; objects are never rewritten in place, so it cannot change.
        """
        try:
            return open(self.path(sha), "rb")
        except FileNotFoundError:
            return None

    # -- space --------------------------------------------------------------

    def available(self) -> int:
        """Bytes an upload may use: free space minus the reserve."""
        os.makedirs(self.directory, exist_ok=True)
        free = self._free_space(self.directory)
        if not self._reserved_percent:
            return free
        total = shutil.disk_usage(self.directory).total
        return free - int(total * self._reserved_percent / 100)

    # -- uploads --------------------------------------------------------------

    def put(self, sha: str, stream, length: Optional[int]) -> bool:
        """Store the body read from ``stream`` as object ``sha``.

        :param length: the request's Content-Length, if any (checked against
            free space before anything is written).
        :return: ``True`` if a new object was stored, ``False`` if it was
            already there (the body was read and checked, nothing written).
        :raises Unprocessable: the body's SHA-256 is not ``sha``.
        :raises InsufficientStorage: not enough space; nothing is left behind.
        """
        final = self.path(sha)
        with self._lock:
            present = os.path.isfile(final)
            if present:
                # A re-upload means a client is about to reference it: restart
                # its GC grace period before reading the body.
                os.utime(final)
        if present:
            self._check_only(sha, stream)
            if os.path.isfile(final):
                return False
            # NOTE: only a GC with a grace period shorter than this upload
            # gets here; the bytes were read but not kept.
            raise PvError("Upload error", 500)
        available = self.available()
        if length is not None and length > available:
            # Decided on the declared length alone: answer before reading a
            # byte of the body (no 100 Continue) and close, rather than take
            # in what cannot be stored (docs/protocol.md §7.8).
            raise InsufficientStorage(headers={"Connection": "close"})
        tmp = os.path.join(self.directory, f"{sha}.{os.getpid()}-{secrets.token_hex(8)}.tmp")
        try:
            self._write_temp(sha, tmp, stream, available)
            with self._lock:
                try:
                    os.link(tmp, final)
                except FileExistsError:  # a concurrent upload of the same bytes won
                    stored = False
                else:
                    stored = True
                _unlink_quietly(tmp)
            fsync_dir(self.directory)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        if stored:
            try:
                size = os.stat(final).st_size
            except FileNotFoundError:  # collected already: nothing to announce
                return stored
            self._publish("object.stored", sha, {"size": size})
        return stored

    def _write_temp(self, sha: str, tmp: str, stream, available: int) -> None:
        digest = hashlib.sha256()
        written = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            with os.fdopen(fd, "wb", buffering=0) as fh:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > available:  # a chunked body with no Content-Length
                        raise InsufficientStorage()
                    digest.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[fh.write(view):]
                os.fsync(fh.fileno())
        except OSError as exc:
            if exc.errno in _NO_SPACE_ERRNOS:
                log.warning("object_upload_no_space", sha=sha, written=written)
                raise InsufficientStorage() from None
            raise
        if digest.hexdigest() != sha:
            log.info("object_bad_checksum", sha=sha, got=digest.hexdigest(), size=written)
            raise Unprocessable("Object has bad checksum")

    @staticmethod
    def _check_only(sha: str, stream) -> None:
        digest = hashlib.sha256()
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
        if digest.hexdigest() != sha:
            raise Unprocessable("Object has bad checksum")

    # -- cleaning -------------------------------------------------------------

    def sweep_dead_uploads(self) -> int:
        """Remove temp files whose uploading process is gone (crash leftovers)."""
        removed = 0
        for name, pid in self._temp_files():
            if pid != os.getpid() and not pid_alive(pid):
                _unlink_quietly(os.path.join(self.directory, name))
                removed += 1
        if removed:
            log.info("object_temp_files_swept", count=removed)
        return removed

    def _temp_files(self) -> Iterable[Tuple[str, int]]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        result = []
        for name in names:
            if name.endswith(".tmp"):
                match = _TEMP.match(name)
                result.append((name, int(match.group("pid")) if match else -1))
        return result

    def collect(self, in_use: Set[str], grace: float) -> int:
        """Delete objects not in ``in_use`` and temp files, all older than ``grace`` s.

        Objects still hard-linked into a trail (link count > 1) are kept too:
        removing them would free nothing. Returns the bytes reclaimed.
        """
        reclaimed = 0
        removed = []
        cutoff = self._clock() - grace
        for sha, _size in self.listing():
            if sha in in_use:
                continue
            path = self.path(sha)
            with self._lock:
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                if st.st_mtime > cutoff or st.st_nlink > 1:
                    continue
                _unlink_quietly(path)
            reclaimed += st.st_size
            removed.append(sha)
        for name, _pid in self._temp_files():
            path = os.path.join(self.directory, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            if st.st_mtime <= cutoff:
                _unlink_quietly(path)
                reclaimed += st.st_size
        if removed:
            fsync_dir(self.directory)
        for sha in removed:
            self._publish("object.collected", sha, {})
        log.info("objects_collected", count=len(removed), reclaimed=reclaimed)
        return reclaimed

