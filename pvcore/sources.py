"""What a stream's body comes from (:mod:`pvcore.streams`): sources pulled only
when the client can take more, so a stream never holds more than one chunk."""
from __future__ import annotations

import os
from typing import Optional


class Source:
    """Where a stream's body comes from.

    :ivar poll_interval: seconds between :meth:`pull` calls when nothing woke
        the hub (a file that grows by itself); ``None`` when the source is
        pushed (events call :meth:`StreamHub.notify`).
    """

    poll_interval: Optional[float] = None

    def pull(self, limit: int) -> Optional[bytes]:
        """Up to about ``limit`` bytes to send next; ``b""`` when there is
        nothing yet, ``None`` when the body is complete (the hub closes)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds (an open file)."""


class FileFollower(Source):
    """Follows a file as it grows (``tail -f``), from byte ``offset``.

    The file is the buffer: nothing is read until the client can take it. A
    file that shrinks (truncated) or is replaced (rotated) is followed from
    its start; one that does not exist yet is waited for.
    """

    poll_interval = 0.1

    def __init__(self, path: str, offset: int = 0):
        self.path = path
        self.offset = offset
        self._fh = None

    def pull(self, limit: int) -> bytes:
        try:
            st = os.stat(self.path)
        except OSError:
            return b""
        if self._fh is not None and os.fstat(self._fh.fileno()).st_ino != st.st_ino:
            self.close()
            self.offset = 0
        if self._fh is None:
            try:
                self._fh = open(self.path, "rb")
            except OSError:
                return b""
        if st.st_size < self.offset:
            self.offset = 0
        if st.st_size == self.offset:
            return b""
        self._fh.seek(self.offset)
        data = self._fh.read(limit)
        self.offset += len(data)
        return data

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def tail_offset(path: str, lines: int, block: int = 8192) -> int:
    """Where the last ``lines`` lines of ``path`` start (0 for a short or
    missing file). Reads backwards a block at a time, never the whole file."""
    try:
        fh = open(path, "rb")
    except OSError:
        return 0
    with fh:
        end = fh.seek(0, os.SEEK_END)
        if lines <= 0:
            return end
        pos, count, last_block = end, 0, True
        while pos > 0:
            step = min(block, pos)
            pos -= step
            fh.seek(pos)
            chunk = fh.read(step)
            if last_block and chunk.endswith(b"\n"):
                chunk = chunk[:-1]  # the newline that ends the last line
            last_block = False
            index = len(chunk)
            while True:
                index = chunk.rfind(b"\n", 0, index)
                if index < 0:
                    break
                count += 1
                if count == lines:
                    return pos + index + 1
        return 0
