"""``POST /commands``: admission of a command into the single slot (docs/protocol.md §7.6)."""
from __future__ import annotations

import falcon
import structlog

from pvcore.body import read_small_body
from pvcore.errors import Conflict, PvError

from pv_commands import device, ops
from pv_commands.ops import Command, parse_command
from pv_commands.state import CommandState

log = structlog.get_logger(__name__)

MAX_BODY = 4096
CLAIMED = "Cannot do this operation if device is already claimed"
REMOTE_DISABLED = "Cannot do this operation when remote mode is disabled by config"
NO_DEBUG_SHELL = "Cannot do this operation when debug shell is not active"
LOCAL_MODE = "Cannot do this operation while on local mode"


class Commands:
    """Accepts one command at a time; a worker carries it out in the background."""

    def __init__(self, core, cstate: CommandState):
        self._core = core
        self._cstate = cstate

    def on_post(self, req, resp):
        command = None
        try:
            command = parse_command(read_small_body(req, MAX_BODY, ops.BAD_FORMAT))
            self._cstate.check_update(command.op)
            if self._no_op(command):
                log.info("command_not_needed", op=command.op)
                resp.status = falcon.HTTP_204
                return
            self._cstate.accept(command)
        except PvError as exc:
            log.info("command_rejected", op=command and command.op, status=exc.status, reason=exc.message)
            raise
        log.info("command_accepted", op=command.op, payload=command.payload)
        self._core.publish("command.accepted", command.op, {"payload": command.payload})
        resp.content_type = falcon.MEDIA_JSON

    def _no_op(self, command: Command) -> bool:
        """The 409 pre-checks, in the contract's order; ``True`` for a 204."""
        core, op = self._core, command.op
        # UPDATE_METADATA records device metadata for the Hub: remote mode
        # only (docs/protocol.md §7.6).
        if op == ops.UPDATE_METADATA and not device.is_remote(self._cstate):
            raise Conflict(LOCAL_MODE)
        if op == ops.MAKE_FACTORY and device.is_claimed(core):
            raise Conflict(CLAIMED)
        if op == ops.GO_REMOTE and not device.config_flag(core, "PV_CONTROL_REMOTE", True):
            raise Conflict(REMOTE_DISABLED)
        if op == ops.DEFER_REBOOT and not device.config_flag(core, "PV_DEBUG_SHELL", True):
            raise Conflict(NO_DEBUG_SHELL)
        if op == ops.GO_REMOTE and device.is_remote(self._cstate):
            return True
        if op == ops.UNCLAIM and not device.is_claimed(core):
            return True
        return False
