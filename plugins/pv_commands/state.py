"""The single command slot and the pending reboot.

One :class:`CommandState` per core, shared by the ``/commands`` resource
(which fills the slot) and the worker thread (which empties it). Everything
is guarded by one condition variable; the worker sleeps on it.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from pvcore.errors import Unavailable

from pv_commands.ops import BLOCKED_BY_UPDATE, Command

UPDATE_ONGOING = "Cannot do this operation while update is ongoing"
UPDATE_RETRY_AFTER = 600
SLOT_BUSY = "A command is already in progress. Try again"
SLOT_RETRY_AFTER = 120


class CommandState:
    """Slot, update and reboot bookkeeping; thread-safe.

    :param clock: monotonic clock, injectable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 update_ongoing: Callable[[], bool] = lambda: False):
        self.clock = clock
        self.update_ongoing = update_ongoing
        self.cond = threading.Condition()
        self.slot: Optional[Command] = None
        self.slot_taken = False
        self.reboot_at: Optional[float] = None
        self.reboot_message = ""
        #: remote mode: set by GO_REMOTE, cleared by running a ``locals/`` revision.
        self.remote = False
        self.stopping = False

    # -- HTTP side ------------------------------------------------------------

    def check_update(self, op: str) -> None:
        """503 + ``Retry-After: 600`` if ``op`` may not run during an update."""
        if op in BLOCKED_BY_UPDATE and self.update_ongoing():
            raise Unavailable(UPDATE_ONGOING, UPDATE_RETRY_AFTER)

    def accept(self, command: Command) -> None:
        """Put ``command`` in the slot and wake the worker.

        :raises Unavailable: an update started meanwhile (600) or the slot is
            occupied (120).
        """
        with self.cond:
            self.check_update(command.op)
            if self.slot is not None:
                raise Unavailable(SLOT_BUSY, SLOT_RETRY_AFTER)
            self.slot = command
            self.slot_taken = False
            self.cond.notify_all()

    # -- worker side ------------------------------------------------------------

    def next_deadline(self) -> Optional[float]:
        return self.reboot_at

    def wait_for_work(self, max_wait: Optional[float] = None) -> Optional[Command]:
        """Block until a command is waiting, a deadline passed or :meth:`stop`.

        :return: the command to carry out (it keeps the slot occupied until
            :meth:`release`), or ``None`` when woken for a deadline or a stop.
        """
        with self.cond:
            while not self.stopping:
                if self.slot is not None and not self.slot_taken:
                    self.slot_taken = True
                    return self.slot
                deadline = self.next_deadline()
                now = self.clock()
                if deadline is not None and deadline <= now:
                    return None
                timeout = None if deadline is None else deadline - now
                if max_wait is not None:
                    timeout = max_wait if timeout is None else min(timeout, max_wait)
                self.cond.wait(timeout)
            return None

    def release(self) -> None:
        """Free the slot once the command was carried out (or dropped)."""
        with self.cond:
            self.slot = None
            self.slot_taken = False
            self.cond.notify_all()

    def reboot_due(self) -> bool:
        with self.cond:
            return self.reboot_at is not None and self.reboot_at <= self.clock()

    def schedule_reboot(self, delay: float, message: str) -> None:
        with self.cond:
            self.reboot_at = self.clock() + delay
            self.reboot_message = message
            self.cond.notify_all()

    def cancel_reboot(self) -> None:
        with self.cond:
            self.reboot_at = None

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    def start(self) -> None:
        with self.cond:
            self.stopping = False
