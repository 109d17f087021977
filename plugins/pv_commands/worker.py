"""The worker thread that carries out accepted commands, one at a time."""
from __future__ import annotations

import threading
from typing import Optional

import structlog

from pvcore.services import Service

from pv_commands.handlers import Executor
from pv_commands.state import CommandState

log = structlog.get_logger(__name__)


class CommandWorker(Service):
    """Empties the command slot and fires timed events (commit, held reboot).

    Starts after the engine and storage services (high ``priority``) so it
    stops before them: no transition runs while the engine shuts down.
    """

    name = "pv_commands.worker"
    priority = 900

    def __init__(self, core, cstate: CommandState, join_timeout: float = 10.0):
        self._core = core
        self._cstate = cstate
        self._executor = Executor(core, cstate)
        self._join_timeout = join_timeout
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._executor.announce()
        self._cstate.start()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._cstate.stop()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._join_timeout)
            if thread.is_alive():
                log.error("command_worker_stuck", timeout=self._join_timeout)
        if self._cstate.slot is not None:
            log.warning("command_dropped", op=self._cstate.slot.op, reason="pvcore stopping")
            self._cstate.release()

    def _run(self) -> None:
        while True:
            command = self._cstate.wait_for_work()
            if self._cstate.stopping:
                return
            try:
                if command is not None:
                    self._executor.execute(command)
                self._executor.on_deadline()
            except Exception:
                log.exception("command_worker_error")
            finally:
                if command is not None:
                    self._cstate.release()
