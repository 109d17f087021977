"""What each op does when the worker carries it out (docs/protocol.md §D11).

pv_commands owns the slot, power and the device's mode; every other op goes
to the plugin that owns it through ``pv_commands_run``
(:mod:`pv_commands.hookspecs`).
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Optional

import structlog

from pv_commands import device, ops
from pv_commands.ops import Command
from pv_commands.state import CommandState

log = structlog.get_logger(__name__)

class Executor:
    """Carries out commands for one core; called from the worker thread only."""

    def __init__(self, core, cstate: CommandState):
        self.core = core
        self.cstate = cstate
        self._handlers: Dict[str, Callable[[Command], Optional[bool]]] = {
            ops.REBOOT_DEVICE: self._reboot,
            ops.POWEROFF_DEVICE: self._poweroff,
            ops.DEFER_REBOOT: self._defer_reboot,
            ops.ENABLE_SSH: self._ssh,
            ops.DISABLE_SSH: self._ssh,
            ops.GO_REMOTE: self._go_remote,
            ops.UNCLAIM: self._unclaim,
        }

    # -- entry points --------------------------------------------------------------

    def execute(self, command: Command) -> None:
        """Carry out ``command``; never raises."""
        started = time.monotonic()
        reason = self._refusal(command)
        if reason is not None:
            log.warning("command_dropped", op=command.op, payload=command.payload, reason=reason)
            self._finished(command, False, reason)
            return
        log.info("command_started", op=command.op, payload=command.payload)
        ok: Optional[bool] = False
        error = None
        try:
            handler = self._handlers.get(command.op)
            if handler is not None:
                ok = handler(command)
            else:
                ok = self.core.hook.pv_commands_run(core=self.core, op=command.op, payload=command.payload)
                if ok is None:
                    log.warning("command_unhandled", op=command.op)
                    error = "unhandled"
                elif ok and command.op in ops.TRANSITIONS:
                    self._left_remote(command)
        except OSError as exc:
            # the device's trouble (a full partition), not pvcore's bug: said without a traceback
            log.error("command_failed", op=command.op, payload=command.payload, error=str(exc))
            ok, error = False, f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            log.exception("command_failed", op=command.op, payload=command.payload)
            ok, error = False, f"{type(exc).__name__}: {exc}"
        log.info("command_done", op=command.op, payload=command.payload, ok=bool(ok),
                 seconds=round(time.monotonic() - started, 3))
        self._finished(command, bool(ok), error)

    def _finished(self, command: Command, ok: bool, error: Optional[str]) -> None:
        # NOTE: a LOCAL_RUN is finished once its transition has been handed over;
        # its outcome comes as revision.progress events.
        try:
            self.core.publish("command.finished", command.op,
                              {"payload": command.payload, "ok": ok, "error": error})
        except Exception:
            log.exception("command_event_failed", op=command.op)

    def on_deadline(self) -> None:
        """Reboot when a held reboot is due."""
        if self.cstate.reboot_due():
            message = self.cstate.reboot_message
            self.cstate.cancel_reboot()
            self._power("reboot", message)

    def _refusal(self, command: Command) -> Optional[str]:
        # NOTE: the HTTP pre-checks ran when the command was accepted; the device
        # may have changed since (docs/protocol.md §12.26), so check again.
        # An update cannot have started since: only this worker starts one, one
        # command at a time, and a blocked op is refused while one runs.
        if self.cstate.reboot_at is not None and command.op != ops.DEFER_REBOOT:
            return "reboot pending"
        if command.op == ops.UPDATE_METADATA and not device.is_remote(self.cstate):
            return "local mode"
        return None

    # -- settings -------------------------------------------------------------------

    def _setting(self, name: str):
        return self.core.settings.get(name)

    # -- transitions -------------------------------------------------------------------

    def _left_remote(self, command: Command) -> None:
        # Running a local revision ends remote mode, unless configured otherwise.
        if self.cstate.remote and command.payload.startswith("locals/"):
            if not device.config_flag(self.core, "PV_CONTROL_REMOTE_ALWAYS", False):
                self.cstate.remote = False
                self._announce_mode()

    # -- power --------------------------------------------------------------------------

    def _power(self, action: str, message: str) -> bool:
        backend = self.core.hook.pv_commands_power_backend(core=self.core)
        if backend is None:
            log.error("power_backend_missing", action=action)
            return False
        getattr(backend, action)(message)
        return True

    def _reboot(self, command: Command) -> bool:
        delay = self._setting("reboot_delay")
        if delay > 0:
            self.cstate.schedule_reboot(delay, command.payload)
            log.warning("reboot_scheduled", delay=delay, message=command.payload)
            return True
        return self._power("reboot", command.payload)

    def _poweroff(self, command: Command) -> bool:
        return self._power("poweroff", command.payload)

    def _defer_reboot(self, command: Command) -> bool:
        if self.cstate.reboot_at is None:
            log.warning("reboot_not_pending", op=command.op)
            return False
        seconds = int(command.payload)
        self.cstate.schedule_reboot(seconds, self.cstate.reboot_message)
        log.warning("reboot_deferred", seconds=seconds)
        return True

    # -- daemons, config, metadata ------------------------------------------------------

    def _ssh(self, command: Command) -> bool:
        enable = command.op == ops.ENABLE_SSH
        configured = self.core.call("pv_config_set", key="PV_DEBUG_SSH", value=enable,
                                                      level="command")
        done = self.core.call("pv_daemons_control", name="ssh",
                                                    action="start" if enable else "stop")
        log.info("ssh_toggled", enabled=enable, configured=bool(configured), daemon=bool(done))
        return bool(done)

    def _announce_mode(self) -> None:
        mode = "remote" if device.is_remote(self.cstate) else "local"
        self.core.publish("commands.mode", mode, {})

    def _announce_claimed(self) -> None:
        self.core.publish("commands.claimed", "1" if device.is_claimed(self.core) else "0", {})

    def announce(self) -> None:
        """Publish the facts pv_commands owns (mode, claimed) when the worker starts:
        the device-meta keys ``pantavisor.mode`` and ``pantahub.claimed`` follow
        them, and nothing else writes those keys (docs/architecture.md §2)."""
        self._announce_mode()
        self._announce_claimed()

    def _go_remote(self, command: Command) -> bool:
        if not device.config_flag(self.core, "PV_CONTROL_REMOTE", True):
            log.warning("go_remote_refused", reason="disabled by config")
            return False
        self.cstate.remote = True
        self._announce_mode()
        log.info("mode_changed", mode="remote")
        return True

    def _unclaim(self, command: Command) -> bool:
        if not device.is_claimed(self.core):
            log.info("already_unclaimed")
            return True
        device.mark_unclaimed(self.core)
        self._announce_claimed()
        log.warning("device_unclaimed")
        return True
