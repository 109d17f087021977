"""Shapes of background work: services, loops and daemon declarations."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence

import structlog

log = structlog.get_logger(__name__)


class Service:
    """Base for what ``pvcore_services`` returns: ``start()`` and ``stop()``.

    ``priority`` orders start-up (lower first); stop runs in reverse.
    """

    name = "service"
    priority = 100

    def start(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class LoopService(Service):
    """Calls ``tick()`` every ``interval`` seconds in one thread until stopped.

    ``wake()`` runs the next tick at once; ``stop()`` interrupts the wait, so
    shutdown never waits a whole interval. An exception in ``tick`` is logged
    and the loop goes on.
    """

    interval = 1.0

    def __init__(self, name: str, tick: Callable[[], None], interval: Optional[float] = None, priority: int = 100):
        self.name = name
        self._tick = tick
        if interval is not None:
            self.interval = interval
        self.priority = priority
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:
                log.exception("loop_tick_failed", service=self.name)
            self._wake.wait(self.interval)
            self._wake.clear()


@dataclass
class DaemonSpec:
    """A daemon for the daemons plugin to supervise (``pv_daemons_declare``).

    :ivar name: as listed by ``GET /daemons``.
    :ivar argv: the command line; ``argv[0]`` must exist or the daemon is
        listed with ``respawn: false`` (upstream's missing-binary rule).
    :ivar env: extra environment variables.
    :ivar autostart: start it at boot (``ssh`` starts only on ENABLE_SSH).
    """

    name: str
    argv: Sequence[str]
    env: Dict[str, str] = field(default_factory=dict)
    autostart: bool = True
