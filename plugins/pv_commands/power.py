"""Power backends for REBOOT_DEVICE and POWEROFF_DEVICE (``pv_commands_power_backend``).

Both backends first stop every container in reverse group order (through
``pv_containers_stop``), then:

* :class:`DemoPower` (the embedded demo device) ends processes of pvcore
  itself. Poweroff sends SIGTERM to gunicorn's master: the worker stops every
  service (daemons included) and the master removes the socket and exits.
  Reboot sends SIGTERM to the worker: gunicorn replaces it, and the new worker
  boots the device from storage as a real boot would (the storage plugin
  picks the committed revision, forgetting a TRY_ONCE revision).
* :class:`SystemPower` runs the ``reboot``/``poweroff`` commands of a real
  device.
"""
from __future__ import annotations

import os
import signal
import subprocess
from typing import Callable, Sequence

import structlog

log = structlog.get_logger(__name__)


def _prepare(core, action: str, message: str) -> None:
    log.warning("power_action", action=action, message=message)
    core.hook.pvcore_activity(core=core, name="shutdown", active=True)
    core.call("pv_containers_stop", timeout=core.settings.stop_timeout)


class DemoPower:
    """Power actions on the demo device: restart or stop pvcore itself.

    :param kill: ``os.kill``-like function, injected by tests.
    :param master_pid: function giving gunicorn's master pid (the worker's parent).
    """

    #: a reboot restarts pvcore, not a device: a reboot transition runs in place
    #: (``pv_commands_power_backend``).
    demo = True

    def __init__(self, core, kill: Callable[[int, int], None] = os.kill,
                 master_pid: Callable[[], int] = os.getppid):
        self._core = core
        self._kill = kill
        self._master_pid = master_pid

    def reboot(self, message: str) -> None:
        _prepare(self._core, "reboot", message)
        pid = os.getpid()
        log.warning("demo_reboot", worker_pid=pid)
        self._kill(pid, signal.SIGTERM)

    def poweroff(self, message: str) -> None:
        _prepare(self._core, "poweroff", message)
        pid = self._master_pid()
        log.warning("demo_poweroff", master_pid=pid)
        self._kill(pid, signal.SIGTERM)


class SystemPower:
    """Power actions on a real device: the system's ``reboot``/``poweroff``.

    :param run: ``subprocess.run``-like function, injected by tests.
    """

    def __init__(self, core, run: Callable[..., subprocess.CompletedProcess] = subprocess.run):
        self._core = core
        self._run = run

    def _call(self, argv: Sequence[str]) -> None:
        try:
            result = self._run(list(argv), check=False, timeout=60)
            failed = result.returncode != 0
        except (OSError, subprocess.SubprocessError) as exc:
            log.error("power_command_failed", argv=list(argv), error=str(exc))
            failed = True
        if failed:
            log.error("power_command_failed", argv=list(argv))
            self._core.hook.pvcore_activity(core=self._core, name="shutdown", active=False)

    def reboot(self, message: str) -> None:
        _prepare(self._core, "reboot", message)
        self._call(["reboot"])

    def poweroff(self, message: str) -> None:
        _prepare(self._core, "poweroff", message)
        self._call(["poweroff"])
