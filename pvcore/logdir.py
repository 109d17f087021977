"""Bounded logs: children's output pumped into ``<storage>/logs`` under a size budget.

A container's console (and a daemon's output) used to be a file the child
appended to directly, so one ``yes`` in a container filled the storage
partition: uploads, revisions and metadata then got 507, and nothing ever
gave the space back. As upstream does (docs/architecture.md, "Logs"):

1. **Per file.** A supervised child writes into a pipe; the
   :class:`LogDir` thread copies it to its file and truncates the file to
   empty once it would grow past ``log_file_maxsize`` (2 MiB, upstream's
   ``truncate_size``). A child cannot write to its log any other way.
2. **Per directory.** The whole log directory stays under
   ``log_dir_maxsize`` (``PV_LOG_DIR_MAXSIZE``, 16 MiB) with upstream's
   watermarks: past ``high = 0.9 × max`` files are removed, oldest first,
   until the directory is under ``low = max − max / log_hysteresis_factor``.
   Files nobody writes (logs of revisions and containers no longer running)
   go first; only then are live files emptied, largest first. The same
   cleanup runs at start, so a restart gives the space back.
3. **Never blocking.** A write that fails (the partition is full anyway) is
   dropped, never retried; objects, revisions and metadata never wait for
   logs, and the child never waits for more than its pipe.
"""
from __future__ import annotations

import errno
import fcntl
import os
import selectors
import threading
import time
from typing import Dict, List, Optional, Tuple

import structlog

from pvcore import hookimpl
from pvcore.services import Service

log = structlog.get_logger(__name__)

_READ = 1 << 20
#: fcntl F_SETPIPE_SZ (linux/fcntl.h) and the pipe size asked for (fs.pipe-max-size's default).
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
#: A line is written whole, so that two processes writing one log (a
#: container and its restart) never cut into each other's lines; a line
#: still incomplete after this many bytes or seconds is written as it is.
LINE_MAX = 4096
LINE_WAIT = 0.2


def watermarks(maxsize: int, factor: int) -> Tuple[int, int]:
    """``(high, low)``: cleanup starts above ``high`` and stops below ``low`` (upstream's)."""
    high = maxsize * 9 // 10
    low = maxsize - maxsize // max(1, factor)
    return high, min(low, high)


class _Sink:
    """One pipe being copied to one file."""

    __slots__ = ("path", "rfd", "fd", "size", "partial", "since")

    def __init__(self, path: str, rfd: int, fd: int, size: int):
        self.path = path
        self.rfd = rfd
        self.fd = fd
        self.size = size
        self.partial = b""  # the start of a line not written yet
        self.since = 0.0  # when it started waiting


class LogDir(Service):
    """Owns ``<storage>/logs``: pumps children's output into it within its budget.

    :param root: the log directory.
    :param maxsize: ``log_dir_maxsize``; ``0`` disables the directory budget.
    :param file_maxsize: ``log_file_maxsize``; ``0`` disables truncation.
    """

    name = "logs"
    priority = 1  # up before anything spawns, down after every child stopped

    def __init__(self, root: str, maxsize: int, file_maxsize: int, hysteresis_factor: int = 4):
        self.root = os.path.abspath(root)
        self.maxsize = maxsize
        self.file_maxsize = file_maxsize
        self.high, self.low = watermarks(maxsize, hysteresis_factor)
        self._lock = threading.Lock()
        self._sinks: Dict[int, _Sink] = {}  # read end -> sink
        self._incoming: List[_Sink] = []
        self._total = 0
        self._next_check = 0
        self._wake_r: Optional[int] = None
        self._wake_w: Optional[int] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = False
        self.dropped = 0  # bytes that could not be written

    # -- for the supervisor -----------------------------------------------------

    def writer(self, path: str) -> int:
        """A descriptor a child writes its output to; its bytes end up in ``path``.

        The caller closes it once the child has it. While the service is not
        running (a spawn racing the shutdown), the file itself, emptied first
        if it is already over ``file_maxsize``.
        """
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        size = os.fstat(fd).st_size
        if self.file_maxsize and size >= self.file_maxsize:
            os.ftruncate(fd, 0)
            size = 0
        with self._lock:
            if self._thread is None:
                return fd
            rfd, wfd = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(rfd, False)
            try:  # PERF: fewer, larger copies for a chatty child (64 KiB by default)
                fcntl.fcntl(rfd, F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass
            self._incoming.append(_Sink(path, rfd, fd, size))
        self._wake()
        return wfd

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        os.makedirs(self.root, exist_ok=True)
        self._total = self._cleanup()
        self._next_check = self._total + (self.high - self.low)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._stop = False
        with self._lock:
            self._thread = threading.Thread(target=self._run, name="pvcore-logs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        self._stop = True
        self._wake()
        if thread is not None:
            thread.join(5.0)
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._wake_r = self._wake_w = None

    def _wake(self) -> None:
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"\0")
            except OSError:  # full: a wake-up is pending anyway
                pass

    # -- the pump thread ------------------------------------------------------

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while not self._stop:
                waiting = [sink for sink in self._sinks.values() if sink.partial]
                timeout = None
                if waiting:
                    timeout = max(0.0, min(sink.since for sink in waiting) + LINE_WAIT - time.monotonic())
                for key, _mask in sel.select(timeout):
                    if key.data is None:
                        try:
                            while os.read(self._wake_r, 4096):
                                pass
                        except OSError:
                            pass
                    else:
                        self._pump(sel, key.data)
                now = time.monotonic()
                for sink in waiting:
                    if sink.partial and now - sink.since >= LINE_WAIT:
                        self._write(sink, sink.partial)
                        sink.partial = b""
                with self._lock:
                    incoming, self._incoming = self._incoming, []
                for sink in incoming:
                    self._sinks[sink.rfd] = sink
                    sel.register(sink.rfd, selectors.EVENT_READ, sink)
        except Exception:  # pragma: no cover - a bug; logs must not take the worker down
            log.exception("log_pump_failed")
        finally:
            with self._lock:
                leftover, self._incoming = self._incoming, []
            for sink in list(self._sinks.values()) + leftover:
                self._close(sel, sink)
            sel.close()

    def _pump(self, sel, sink: _Sink) -> None:
        try:
            data = os.read(sink.rfd, _READ)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(sel, sink)
            return
        had = sink.partial
        data = had + data
        cut = data.rfind(b"\n") + 1
        if len(data) - cut < LINE_MAX:
            data, sink.partial = data[:cut], data[cut:]
            if sink.partial and (cut or not had):
                sink.since = time.monotonic()  # a new line started waiting
            if not data:
                return
        else:
            sink.partial = b""
        self._write(sink, data)

    def _write(self, sink: _Sink, data: bytes) -> None:
        if self.file_maxsize and sink.size + len(data) > self.file_maxsize:
            # Upstream's truncation: the file starts over (followers see it shrink).
            try:
                os.ftruncate(sink.fd, 0)
            except OSError:
                pass
            self._total -= sink.size
            sink.size = 0
            data = data[-self.file_maxsize:]
        try:
            written = os.write(sink.fd, data)
        except OSError as exc:
            written = 0
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                log.warning("log_write_failed", path=sink.path, error=str(exc))
        self.dropped += len(data) - written
        sink.size += written
        self._total += written
        # NOTE: after a cleanup, the next walk waits for the gap between the
        # watermarks to fill again (upstream counts messages the same way).
        if self.maxsize and self._total > self.high and self._total >= self._next_check:
            self._total = self._cleanup()
            self._next_check = max(self.high, self._total + (self.high - self.low))

    def _close(self, sel, sink: _Sink) -> None:
        if sink.partial:
            self._write(sink, sink.partial)
            sink.partial = b""
        self._sinks.pop(sink.rfd, None)
        try:
            sel.unregister(sink.rfd)
        except (KeyError, ValueError):
            pass
        for fd in (sink.rfd, sink.fd):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- the directory budget ---------------------------------------------------

    def _cleanup(self) -> int:
        """Bring the directory under ``low`` if it is over ``high``; return its size."""
        files = []
        total = 0
        for folder, _dirs, names in os.walk(self.root):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                total += st.st_size
                files.append((st.st_mtime, st.st_size, path))
        if not self.maxsize or total <= self.high:
            return total
        live = {sink.path: sink for sink in self._sinks.values()}
        removed = emptied = 0
        # Logs nobody writes any more (earlier revisions, stopped containers) first, oldest first.
        for _mtime, size, path in sorted(f for f in files if f[2] not in live):
            if total < self.low:
                break
            try:
                os.unlink(path)
            except OSError:
                continue
            total -= size
            removed += 1
            _prune_empty(os.path.dirname(path), self.root)
        # Then the live ones, largest first.
        for sink in sorted(live.values(), key=lambda s: -s.size):
            if total < self.low:
                break
            try:
                os.ftruncate(sink.fd, 0)
            except OSError:
                continue
            total -= sink.size
            sink.size = 0
            emptied += 1
        log.warning("log_dir_cleaned", root=self.root, removed=removed, emptied=emptied, size=total,
                    maxsize=self.maxsize)
        return total

    @property
    def size(self) -> int:
        """Bytes in the log directory as the pump counts them."""
        return self._total


def _prune_empty(folder: str, root: str) -> None:
    while folder != root and folder.startswith(root + os.sep):
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = os.path.dirname(folder)


@hookimpl
def pvcore_startup(core):
    settings = core.settings
    logs = LogDir(os.path.join(settings.storage_dir, "logs"), settings.get("log_dir_maxsize"),
                  settings.get("log_file_maxsize"), settings.get("log_hysteresis_factor"))
    core.supervisor.logs = logs


@hookimpl
def pvcore_services(core):
    return [core.supervisor.logs]
