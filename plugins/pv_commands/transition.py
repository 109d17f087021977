"""Revision transitions without reboot (device-model §3.2, §3.3).

:func:`begin` validates the revision, switches ``trails/current``, asks the
engine to bring the revision up and either rolls back (progress ERROR) or
leaves it TESTING with a commit deadline; :func:`finish` runs when that
deadline passes and writes the final state (UPDATED or DONE). Storage and
engine are reached only through hooks.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Mapping, Optional

import structlog

from pv_commands.ops import LOCAL_APPLY, LOCAL_RUN_COMMIT, MAKE_FACTORY, TRY_ONCE
from pv_commands.state import CommandState, Update

log = structlog.get_logger(__name__)

STATE_NOT_FOUND = "State JSON not found"
NOT_STARTED = "A container could not be started"
OBJECTS_MISSING = "Object validation went wrong"
INTERNAL_ERROR = "Internal error"
TRANSITIONING = "Transitioning to new revision without rebooting"
TESTING = "Awaiting to see if update is stable"
UPDATED = "Update finished, revision not set as rollback point"
DONE = "Update finished, revision set as rollback point"

#: Ops that end committed (DONE) rather than UPDATED.
COMMITTING = (LOCAL_RUN_COMMIT, MAKE_FACTORY)


def _progress(core, rev: str, status: str, message: str, logs: Optional[str] = None) -> None:
    written = core.call("pv_steps_set_progress", rev=rev, status=status, message=message, logs=logs)
    log.info("revision_progress", rev=rev, status=status, message=message, written=bool(written))


def _log_line(message: str) -> str:
    return json.dumps({"plat": "pantavisor", "lvl": "ERROR", "src": "commands", "msg": message}) + "\n"


def _missing_objects(core, rev: str) -> list:
    shas = core.call("pv_steps_revision_objects", rev=rev) or ()
    return list(core.call("pv_objects_missing", default=shas, shas=shas)) if shas else []


def _run(core, rev: str, state: Mapping[str, Any], only_changed: bool, timeout: float):
    result = core.call("pv_containers_run_revision", rev=rev, state=state, only_changed=only_changed,
                       timeout=timeout)
    if result is None:
        return False, "No container engine"
    ok, message = result
    return bool(ok), message or ""


def begin(core, cstate: CommandState, op: str, rev: str, timeout: float, commit_delay: float,
          prepare: Optional[Callable[[], bool]] = None) -> bool:
    """Start the transition to ``rev`` for ``op``; return ``True`` if it reached TESTING.

    :param prepare: run after the previous revision was captured and before
        ``rev`` is loaded (MAKE_FACTORY rewrites revision ``0`` here); a
        false answer abandons the transition.
    """
    old = core.call("pv_steps_running_revision")
    old_state = core.call("pv_steps_revision_state", rev=old) if old is not None else None
    if prepare is not None and not prepare():
        return False
    state = core.call("pv_steps_revision_state", rev=rev)
    if state is None:
        log.warning("revision_transition_refused", op=op, rev=rev, reason=STATE_NOT_FOUND)
        _progress(core, rev, "WONTGO", STATE_NOT_FOUND)
        return False
    missing = _missing_objects(core, rev)
    if missing:
        log.warning("revision_transition_refused", op=op, rev=rev, reason=OBJECTS_MISSING, missing=missing[:5])
        _progress(core, rev, "ERROR", OBJECTS_MISSING, _log_line(f"{len(missing)} objects missing"))
        return False

    containers = frozenset(key[: -len("/run.json")] for key in state
                           if key.endswith("/run.json") and not key.startswith("bsp/"))
    cstate.set_update(Update(op=op, rev=rev, old=old, old_state=old_state, containers=containers))
    log.info("revision_transition_started", op=op, rev=rev, old=old)
    core.hook.pvcore_activity(core=core, name="update", active=True)
    try:
        # NOTE: the try is recorded before its progress says INPROGRESS: a
        # crash between the two then leaves a recorded try that the next boot
        # rolls back and marks ERROR, never an INPROGRESS that nothing ends.
        if core.call("pv_steps_set_running_revision", rev=rev, try_once=(op == TRY_ONCE)):
            _progress(core, rev, "INPROGRESS", TRANSITIONING)
            ok, message = _run(core, rev, state, op == LOCAL_APPLY, timeout)
        else:
            log.error("running_revision_not_set", rev=rev)
            ok, message = False, INTERNAL_ERROR
    except Exception:
        log.exception("revision_transition_crashed", op=op, rev=rev)
        ok, message = False, INTERNAL_ERROR
    if not ok:
        _roll_back(core, cstate, op, rev, old, old_state, message, timeout)
        return False
    _progress(core, rev, "TESTING", TESTING)
    cstate.schedule_commit(commit_delay)
    log.info("revision_testing", op=op, rev=rev, commit_delay=commit_delay)
    return True


def _roll_back(core, cstate: CommandState, op: str, rev: str, old: Optional[str], old_state,
               message: str, timeout: float) -> None:
    log.error("revision_transition_failed", op=op, rev=rev, old=old, reason=message)
    try:
        if old is not None and old_state is not None:
            core.call("pv_steps_set_running_revision", rev=old, try_once=False)
            ok, back_message = _run(core, old, old_state, False, timeout)
            if ok:
                log.info("revision_rolled_back", rev=rev, to=old)
            else:
                log.error("revision_rollback_failed", rev=rev, to=old, reason=back_message)
        else:
            log.error("revision_rollback_impossible", rev=rev, old=old)
        _progress(core, rev, "ERROR", message, _log_line(message))
    finally:
        cstate.set_update(None)
        _end(core)


def finish(core, cstate: CommandState, update: Update, timeout: float) -> None:
    """End a transition whose TESTING time is over: UPDATED, or commit and DONE.

    A revision that failed while TESTING (:meth:`CommandState.fail_testing`)
    is rolled back instead, progress ERROR.
    """
    if update.failure is not None:
        _roll_back(core, cstate, update.op, update.rev, update.old, update.old_state, update.failure, timeout)
        return
    try:
        if update.op in COMMITTING:
            committed = core.call("pv_steps_commit_revision", rev=update.rev)
            if not committed:
                log.error("revision_commit_failed", rev=update.rev)
            _progress(core, update.rev, "DONE", DONE)
        else:
            _progress(core, update.rev, "UPDATED", UPDATED)
        log.info("revision_transition_done", op=update.op, rev=update.rev, old=update.old,
                 committed=update.op in COMMITTING)
    finally:
        cstate.set_update(None)
        _end(core)


def abandon(core, cstate: CommandState) -> None:
    """Forget a transition still TESTING when pvcore stops; the next boot decides."""
    update = cstate.update
    if update is not None:
        log.warning("revision_transition_interrupted", op=update.op, rev=update.rev)
        cstate.set_update(None)
        _end(core)


def _end(core) -> None:
    core.hook.pvcore_activity(core=core, name="update", active=False)
