"""A one-line upload progress bar for terminals."""

from __future__ import annotations

import time
from typing import Optional, TextIO

_WIDTH = 30
_MIB = 1 << 20


class ProgressBar:
    """Callable ``bar(sent, total)`` that redraws a bar on *stream*.

    Redraws are throttled to ten per second (plus the final one) so a fast
    local upload does not spend its time writing to the terminal.
    """

    def __init__(self, stream: TextIO, label: str = "", interval: float = 0.1):
        self.stream = stream
        self.label = label
        self.interval = interval
        self._last = float("-inf")
        self._done = False

    def __call__(self, sent: int, total: int) -> None:
        now = time.monotonic()
        complete = sent >= total
        if not complete and now - self._last < self.interval:
            return
        self._last = now
        self.stream.write("\r" + self.render(sent, total))
        if complete and not self._done:
            self._done = True
            self.stream.write("\n")
        self.stream.flush()

    def render(self, sent: int, total: int) -> str:
        """The bar text for *sent* of *total* bytes (no carriage return)."""
        fraction = 1.0 if total <= 0 else min(sent / total, 1.0)
        filled = int(fraction * _WIDTH)
        bar = "#" * filled + " " * (_WIDTH - filled)
        label = f"{self.label} " if self.label else ""
        return f"{label}[{bar}] {fraction * 100:5.1f}% {sent / _MIB:.1f}/{total / _MIB:.1f} MiB"


def progress_for(stream: TextIO, label: str = "") -> Optional[ProgressBar]:
    """A :class:`ProgressBar` on *stream* if it is a terminal, else None,
    so piped or redirected stderr stays free of control characters."""
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):
        interactive = False
    return ProgressBar(stream, label) if interactive else None
