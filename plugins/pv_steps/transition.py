"""Revision transitions without reboot, owned by the owner of revisions.

``LOCAL_RUN``, ``LOCAL_RUN_COMMIT``, ``TRY_ONCE``, ``LOCAL_APPLY`` and
``MAKE_FACTORY`` reach pv_steps through ``pv_commands_run``. :meth:`Updater.run`
validates the revision, switches ``trails/current``, has the container engine
bring it up (``pv_containers_run_revision``) and either rolls back (progress
ERROR) or leaves it TESTING with a commit deadline; the updater's thread ends
it when the deadline passes (UPDATED, or committed and DONE), or rolls it back
at once when one of its containers dies on its own (a ``container.status``
event). The progress, the boot record and ``current`` are pv_steps' own state,
written here directly; the only other plugins asked are the object store
(``pv_objects_missing``) and the engine.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, FrozenSet, List, Optional

import structlog

from pvcore.services import Service

from pv_steps import secureboot

log = structlog.get_logger(__name__)

LOCAL_RUN = "LOCAL_RUN"
LOCAL_RUN_COMMIT = "LOCAL_RUN_COMMIT"
TRY_ONCE = "TRY_ONCE"
LOCAL_APPLY = "LOCAL_APPLY"
MAKE_FACTORY = "MAKE_FACTORY"
#: The command ops that switch the running revision.
TRANSITIONS = (LOCAL_RUN, LOCAL_RUN_COMMIT, TRY_ONCE, LOCAL_APPLY, MAKE_FACTORY)
#: Ops that end committed (DONE) rather than UPDATED.
COMMITTING = (LOCAL_RUN_COMMIT, MAKE_FACTORY)
FACTORY = "0"

STATE_NOT_FOUND = "State JSON not found"
NOT_STARTED = "A container could not be started"
OBJECTS_MISSING = "Object validation went wrong"
INTERNAL_ERROR = "Internal error"
TRANSITIONING = "Transitioning to new revision without rebooting"
TESTING = "Awaiting to see if update is stable"
UPDATED = "Update finished, revision not set as rollback point"
DONE = "Update finished, revision set as rollback point"

#: Statuses a container leaves when it dies on its own (a stop goes through STOPPING).
_UP = ("STARTING", "STARTED", "READY")


@dataclass
class Update:
    """A revision transition from ``old`` to ``rev``.

    :ivar old_revision: the previous revision's model, to roll back to.
    :ivar containers: names of ``rev``'s containers, as its model names them
        (one name each: the folder, which run.json's ``name`` must equal).
    :ivar commit_at: monotonic time at which TESTING ends; ``None`` while the
        containers are still being brought up.
    :ivar failure: why the revision failed while TESTING; ended at once.
    """

    op: str
    rev: str
    old: Optional[str]
    old_revision: Any = None
    containers: FrozenSet[str] = frozenset()
    commit_at: Optional[float] = None
    failure: Optional[str] = None
    #: the containers are up: from now on one dying fails the revision
    testing: bool = False


def _log_line(message: str) -> str:
    return json.dumps({"plat": "pantavisor", "lvl": "ERROR", "src": "commands", "msg": message}) + "\n"


class Updater(Service):
    """The update in flight, its commit deadline and the thread that ends it.

    Stops (high ``priority``) before the engine, so no transition runs while
    the engine shuts down; an update still TESTING is then abandoned and the
    next boot decides (:meth:`pv_steps.state.Steps.start`).
    """

    name = "pv_steps.updater"
    priority = 850

    def __init__(self, core, steps, set_running: Callable[[str, bool], Optional[bool]],
                 clock: Callable[[], float] = time.monotonic):
        self._core = core
        self._steps = steps
        self._set_running = set_running
        self.clock = clock
        self.cond = threading.Condition()
        self.update: Optional[Update] = None
        #: the revision of a transition command accepted but not carried out yet
        self.pending: Optional[str] = None
        self._stopping = False
        self._thread: Optional[threading.Thread] = None

    # -- what other parts ask -----------------------------------------------------

    def ongoing(self) -> bool:
        with self.cond:
            return self.update is not None

    def in_use(self) -> List[str]:
        """The revision being transitioned to, and one waiting to start."""
        with self.cond:
            revs = [self.update.rev] if self.update is not None else []
            if self.pending and self.pending not in revs:
                revs.append(self.pending)
            return revs

    def container_died(self, name: str, old: Optional[str], new: Optional[str]) -> None:
        """A container changed status; one of a TESTING revision that died fails it."""
        if new != "STOPPED" or old not in _UP:
            return
        with self.cond:
            update = self.update
            if update is None or not update.testing or name not in update.containers:
                return
            if update.failure is None:
                update.failure = NOT_STARTED
                if update.commit_at is not None:
                    update.commit_at = self.clock()  # due now: the thread ends it at once
            self.cond.notify_all()
        log.error("container_died_while_testing", container=name, old=old)

    # -- the transition -----------------------------------------------------------------

    def _progress(self, rev: str, status: str, message: str, logs: Optional[str] = None) -> None:
        written = self._steps.trails.write_progress(rev, status, message, logs)
        log.info("revision_progress", rev=rev, status=status, message=message, written=bool(written))

    def run(self, op: str, payload: str) -> bool:
        """Carry out transition ``op``; ``True`` once the revision reached TESTING."""
        settings = self._core.settings
        trails = self._steps.trails
        prepare = None
        if op == MAKE_FACTORY:
            source = payload or trails.running()
            if not source:
                log.error("make_factory_failed", reason="no running revision")
                return False

            def prepare() -> bool:
                done = self._steps.make_factory(source)
                log.info("factory_made", source=source, ok=bool(done))
                return bool(done)

            rev = FACTORY
        else:
            rev = trails.running() or payload if payload == "current" else payload
        return self._begin(op, rev, settings.get("update_goals_timeout"), settings.get("update_commit_delay"),
                           prepare)

    def _begin(self, op: str, rev: str, timeout: float, commit_delay: float,
               prepare: Optional[Callable[[], bool]]) -> bool:
        core, trails = self._core, self._steps.trails
        old = trails.running()
        revisions = self._steps.revisions
        old_revision = revisions.get(old) if old is not None else None
        if prepare is not None and not prepare():
            return False
        revision = revisions.get(rev)
        if revision is None:
            # Recorded even for a revision that does not exist, so the client
            # that asked can read why (docs/protocol.md §D3.2).
            written = trails.record_unknown(rev, "WONTGO", STATE_NOT_FOUND)
            log.warning("revision_transition_refused", op=op, rev=rev, reason=STATE_NOT_FOUND,
                        progress_written=written)
            return False
        refused = secureboot.verify_state(core, trails.state_path(rev))
        if refused is not None:
            log.warning("revision_transition_refused", op=op, rev=rev, reason=refused)
            self._progress(rev, "WONTGO", refused)
            return False
        shas = list(revision.shas())
        missing = list(core.call("pv_objects_missing", default=shas, shas=shas)) if shas else []
        if missing:
            log.warning("revision_transition_refused", op=op, rev=rev, reason=OBJECTS_MISSING, missing=missing[:5])
            self._progress(rev, "ERROR", OBJECTS_MISSING, _log_line(f"{len(missing)} objects missing"))
            return False
        corrupt = secureboot.corrupt_objects(core, revision)
        if corrupt:
            log.warning("revision_transition_refused", op=op, rev=rev, reason=OBJECTS_MISSING, corrupt=corrupt[:5])
            self._progress(rev, "ERROR", OBJECTS_MISSING, _log_line(f"{len(corrupt)} objects do not match their sha256"))
            return False
        with self.cond:
            self.update = Update(op=op, rev=rev, old=old, old_revision=old_revision,
                                 containers=frozenset(revision.containers))
            self.cond.notify_all()
        log.info("revision_transition_started", op=op, rev=rev, old=old)
        core.hook.pvcore_activity(core=core, name="update", active=True)
        try:
            # NOTE: the try is recorded before its progress says INPROGRESS: a
            # crash between the two then leaves a recorded try that the next boot
            # rolls back and marks ERROR, never an INPROGRESS that nothing ends.
            if self._set_running(rev, op == TRY_ONCE):
                self._progress(rev, "INPROGRESS", TRANSITIONING)
                ok, message = self._run_engine(revision, op == LOCAL_APPLY, timeout)
            else:
                log.error("running_revision_not_set", rev=rev)
                ok, message = False, INTERNAL_ERROR
        except Exception:
            log.exception("revision_transition_crashed", op=op, rev=rev)
            ok, message = False, INTERNAL_ERROR
        if not ok:
            self._roll_back(op, rev, old, old_revision, message, timeout)
            return False
        # NOTE: deaths count from before TESTING is visible, and the deadline
        # is set after it, so the thread never ends it before it says TESTING.
        with self.cond:
            if self.update is not None:
                self.update.testing = True
        self._progress(rev, "TESTING", TESTING)
        with self.cond:
            update = self.update
            if update is not None:
                update.commit_at = self.clock() + (0 if update.failure else commit_delay)
            self.cond.notify_all()
        log.info("revision_testing", op=op, rev=rev, commit_delay=commit_delay)
        return True

    def _run_engine(self, revision, only_changed: bool, timeout: float):
        result = self._core.call("pv_containers_run_revision", revision=revision, only_changed=only_changed,
                                 timeout=timeout)
        if result is None:
            return False, "No container engine"
        ok, message = result
        return bool(ok), message or ""

    def _roll_back(self, op: str, rev: str, old: Optional[str], old_revision, message: str, timeout: float) -> None:
        log.error("revision_transition_failed", op=op, rev=rev, old=old, reason=message)
        try:
            if old is not None and old_revision is not None:
                self._set_running(old, False)
                ok, back_message = self._run_engine(old_revision, False, timeout)
                if ok:
                    log.info("revision_rolled_back", rev=rev, to=old)
                else:
                    log.error("revision_rollback_failed", rev=rev, to=old, reason=back_message)
            else:
                log.error("revision_rollback_impossible", rev=rev, old=old)
        finally:
            self._free_slot()
        try:
            self._progress(rev, "ERROR", message, _log_line(message))
        finally:
            self._end()

    def _finish(self, update: Update) -> None:
        if update.failure is not None:
            self._roll_back(update.op, update.rev, update.old, update.old_revision, update.failure,
                            self._core.settings.get("update_goals_timeout"))
            return
        committed = update.op in COMMITTING
        try:
            if committed and not self._steps.commit(update.rev):
                log.error("revision_commit_failed", rev=update.rev)
        finally:
            self._free_slot()
        try:
            if committed:
                self._progress(update.rev, "DONE", DONE)
            else:
                self._progress(update.rev, "UPDATED", UPDATED)
            log.info("revision_transition_done", op=update.op, rev=update.rev, old=update.old,
                     committed=committed)
        finally:
            self._end()

    def _free_slot(self) -> None:
        # Called before the final progress is written: a client that reads
        # UPDATED, DONE or ERROR may send its next command (a reboot) at once
        # and must not meet "an update is ongoing" (docs/protocol.md).
        with self.cond:
            self.update = None
            self.cond.notify_all()

    def _end(self) -> None:
        self._free_slot()
        self._core.hook.pvcore_activity(core=self._core, name="update", active=False)

    # -- the thread -----------------------------------------------------------------------

    def start(self) -> None:
        with self.cond:
            self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(10.0)
        with self.cond:
            update = self.update
        if update is not None:
            log.warning("revision_transition_interrupted", op=update.op, rev=update.rev)
            self._end()

    def _due(self) -> Optional[Update]:
        """Wait until the update's commit deadline passes (or a stop); return it then."""
        with self.cond:
            while not self._stopping:
                update = self.update
                deadline = update.commit_at if update is not None else None
                now = self.clock()
                if deadline is not None and deadline <= now:
                    return update
                self.cond.wait(None if deadline is None else deadline - now)
            return None

    def _loop(self) -> None:
        while True:
            update = self._due()
            if update is None:
                return
            try:
                self._finish(update)
            except Exception:
                log.exception("revision_finish_failed", rev=update.rev)
                self._end()
