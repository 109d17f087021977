"""Revision transitions, owned by the owner of revisions (docs/protocol.md §D3).

``LOCAL_RUN``, ``LOCAL_RUN_COMMIT``, ``TRY_ONCE``, ``LOCAL_APPLY`` and
``MAKE_FACTORY`` reach pv_steps through ``pv_commands_run``. :meth:`Updater.run`
validates the revision and decides, from what changed (:func:`reboot_reasons`),
whether it is a *reboot* or a *non-reboot* transition:

* non-reboot: ``trails/current`` is switched and the engine restarts only the
  affected containers (``pv_containers_run_revision(only_changed=True)``);
  the update ends UPDATED.
* reboot: on a real power backend, the try is recorded, progress INPROGRESS
  ``Rebooting`` and the device reboots; the next boot carries on
  (:meth:`Updater.resume`). On the demo device every container is stopped
  and the new revision comes up as a fresh boot would, in place. The update
  ends DONE, committed.

Once every status goal is reached the update is TESTING; the updater's thread
ends it when the commit delay passed and every container survived its
``stable_timeout`` (``pv_containers_stability_pending``), or rolls it back at
once when one of its containers dies on its own or uses up its retries (a
``container.status`` event). The progress, the boot record and ``current``
are pv_steps' own state, written here directly; the only other plugins
asked are the object store (``pv_objects_missing``), the engine, the power
backend (``pv_commands_power_backend``) and the configuration
(``PV_UPDATER_GOALS_TIMEOUT``).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, List, Optional

import structlog

from pvcore.services import Service

from pv_steps import secureboot
from pv_steps.update import (
    DONE, INTERNAL_ERROR, NOT_STARTED, OBJECTS_MISSING, REBOOTING, STABILITY_WAIT, STATE_NOT_FOUND, TESTING,
    TESTING_REBOOT, TRANSITIONING, TRYING, UPDATED, Update, log_line as _log_line, objects_named as _objects,
    write_failed,
)

log = structlog.get_logger(__name__)

LOCAL_RUN = "LOCAL_RUN"
LOCAL_RUN_COMMIT = "LOCAL_RUN_COMMIT"
TRY_ONCE = "TRY_ONCE"
LOCAL_APPLY = "LOCAL_APPLY"
MAKE_FACTORY = "MAKE_FACTORY"
#: The command ops that switch the running revision.
TRANSITIONS = (LOCAL_RUN, LOCAL_RUN_COMMIT, TRY_ONCE, LOCAL_APPLY, MAKE_FACTORY)
#: Ops that are always a reboot transition (upstream's LOCAL_RUN_COMMIT issues a reboot).
ALWAYS_REBOOT = (LOCAL_RUN_COMMIT, MAKE_FACTORY)
#: Ops that never reboot the device nor commit (pvcore's own, docs/protocol.md §12.9).
IN_PLACE = (TRY_ONCE, LOCAL_APPLY)
FACTORY = "0"

#: How often a commit held for stability looks again.
STABILITY_POLL = 0.2

#: Statuses a container leaves when it dies on its own (a stop goes through STOPPING).
_UP = ("STARTING", "STARTED", "READY")


def reboot_reasons(old, new) -> List[str]:
    """Why switching from revision model ``old`` to ``new`` is a reboot transition; ``[]`` when it is not.

    Upstream's list (docs/protocol.md §D3.4): a change in the state's root, in
    the BSP, or in a configuration file of no container (``"system"``); a
    change in a container with the ``system`` restart policy, in the old
    revision or the new one, its ``_config/`` files included (its name).
    Any other change is a non-reboot transition: only the containers whose
    ``digest`` changed are restarted.
    """
    if old is None:
        return ["no running revision"]
    reasons = ["system"] if old.system_digest != new.system_digest else []
    for name in list(old.containers) + [n for n in new.containers if n not in old.containers]:
        before, after = old.containers.get(name), new.containers.get(name)
        if before is not None and after is not None and before.digest == after.digest:
            continue
        if any(c is not None and c.restart_policy == "system" for c in (before, after)):
            reasons.append(name)
    return reasons


def goals_timeout(core) -> float:
    """``PV_UPDATER_GOALS_TIMEOUT`` from the configuration; the ``update_goals_timeout`` setting without it."""
    value = core.call("pv_config_get", key="PV_UPDATER_GOALS_TIMEOUT")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return float(core.settings.get("update_goals_timeout"))


def real_power(core) -> Any:
    """The power backend when it reboots a real device; ``None`` on the demo device."""
    backend = core.call("pv_commands_power_backend")
    return None if backend is None or getattr(backend, "demo", False) else backend


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
        self._resumer: Optional[threading.Thread] = None

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

    def container_status(self, name: str, old: Optional[str], new: Optional[str], data) -> None:
        """A container changed status: one of a TESTING revision that died, or used up
        its retries (whatever its backoff policy), fails it at once."""
        exhausted = bool(data.get("recovery_exhausted"))
        if not exhausted and (new != "STOPPED" or old not in _UP):
            return
        with self.cond:
            update = self.update
            if update is None or not update.testing or name not in update.containers:
                return
            if update.failure is None:
                update.failure = NOT_STARTED
                update.failure_detail = f"container {name}: {data.get('problem') or new or 'STOPPED'}"
                if update.commit_at is not None:
                    update.commit_at = self.clock()  # due now: the thread ends it at once
            self.cond.notify_all()
        log.error("container_died_while_testing", container=name, old=old, new=new,
                  recovery_exhausted=exhausted)

    # -- the transition -----------------------------------------------------------------

    def _progress(self, rev: str, status: str, message: str, logs: Optional[str] = None) -> None:
        written = self._steps.trails.write_progress(rev, status, message, logs)
        log.info("revision_progress", rev=rev, status=status, message=message, written=bool(written))

    def run(self, op: str, payload: str) -> bool:
        """Carry out transition ``op``; ``True`` once the revision reached TESTING (or the device reboots)."""
        trails = self._steps.trails
        prepare = None
        if op == MAKE_FACTORY:
            source = payload or trails.running()
            if not source:
                log.error("make_factory_failed", reason="no running revision")
                return False

            def prepare() -> bool:
                # Revision 0 is what every rollback ends at: never replace it
                # with a state secure boot refuses (docs/protocol.md §D12.1).
                refused = secureboot.verify_state(self._core, trails.state_path(source))
                if refused is not None:
                    log.error("make_factory_failed", source=source, reason=refused)
                    return False
                done = self._steps.make_factory(source)
                log.info("factory_made", source=source, ok=bool(done))
                return bool(done)

            rev = FACTORY
        else:
            rev = trails.running() or payload if payload == "current" else payload
        return self._begin(op, rev, prepare)

    def _begin(self, op: str, rev: str, prepare: Optional[Callable[[], bool]]) -> bool:
        core, trails = self._core, self._steps.trails
        timeout = goals_timeout(core)
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
            self._progress(rev, "ERROR", OBJECTS_MISSING,
                           _log_line(f"{len(missing)} objects missing", _objects(revision, missing)))
            return False
        corrupt = secureboot.corrupt_objects(core, revision)
        if corrupt:
            log.warning("revision_transition_refused", op=op, rev=rev, reason=OBJECTS_MISSING, corrupt=corrupt[:5])
            self._progress(rev, "ERROR", OBJECTS_MISSING,
                           _log_line(f"{len(corrupt)} objects do not match their sha256", _objects(revision, corrupt)))
            return False
        reasons = ["op"] if op in ALWAYS_REBOOT else reboot_reasons(old_revision, revision)
        reboot = bool(reasons) and op not in IN_PLACE
        # TRY_ONCE of a revision that needs a reboot restarts everything, in place.
        restart_all = bool(reasons) and op != LOCAL_APPLY
        update = Update(op=op, rev=rev, old=old, old_revision=old_revision,
                        containers=frozenset(revision.containers), reboot=reboot)
        with self.cond:
            self.update = update
            self.cond.notify_all()
        log.info("revision_transition_started", op=op, rev=rev, old=old, reboot=reboot, reasons=reasons)
        core.hook.pvcore_activity(core=core, name="update", active=True)
        # NOTE: with nothing running yet (an empty device's first revision) a
        # fresh boot is what runs it in place: no reboot (docs/protocol.md §D3.4).
        power = real_power(core) if reboot and old_revision is not None else None
        try:
            # NOTE: the try is recorded before its progress says INPROGRESS: a
            # crash between the two then leaves a recorded try that the next boot
            # rolls back and marks ERROR, never an INPROGRESS that nothing ends.
            refused = self._switch(update)
            if refused is not None:
                ok, message = False, refused
            elif power is not None:
                # The next boot tries it (Steps.start) and Updater.resume carries on.
                self._progress(rev, "INPROGRESS", REBOOTING)
                log.warning("revision_transition_reboot", op=op, rev=rev)
                power.reboot(f"Update to revision {rev}")
                return True
            elif reboot:
                self._progress(rev, "INPROGRESS", REBOOTING)
                self._core.call("pv_containers_stop", timeout=core.settings.stop_timeout)
                self._progress(rev, "INPROGRESS", TRYING)
                ok, message = self._run_engine(revision, False, timeout, update)
            else:
                self._progress(rev, "INPROGRESS", TRANSITIONING)
                ok, message = self._run_engine(revision, not restart_all, timeout, update)
        except Exception:
            log.exception("revision_transition_crashed", op=op, rev=rev)
            ok, message = False, INTERNAL_ERROR
        return self._tested(update, ok, message, timeout)

    def _switch(self, update: Update) -> Optional[str]:
        """Make ``update.rev`` the running revision; the progress message when it could not be."""
        try:
            done = self._set_running(update.rev, update.op == TRY_ONCE)
        except OSError as exc:
            # Nothing switched: the boot record and current are as they were
            # (Steps.set_running), the running revision goes on running.
            log.error("running_revision_not_set", rev=update.rev, error=str(exc))
            update.failure_detail = f"could not record revision {update.rev} as the one to run: {exc}"
            return write_failed(exc)
        if not done:
            log.error("running_revision_not_set", rev=update.rev)
            return INTERNAL_ERROR
        update.switched = True
        return None

    def _tested(self, update: Update, ok: bool, message: str, timeout: float) -> bool:
        """The goals were reached (TESTING, commit deadline) or not (rollback)."""
        if not ok:
            self._roll_back(update, message, timeout)
            return False
        # NOTE: deaths count from before TESTING is visible, and the deadline
        # is set after it, so the thread never ends it before it says TESTING.
        with self.cond:
            update.testing = True
        self._progress(update.rev, "TESTING", TESTING_REBOOT if update.reboot else TESTING)
        commit_delay = self._core.settings.get("update_commit_delay")
        with self.cond:
            if self.update is update:
                update.commit_at = self.clock() + (0 if update.failure else commit_delay)
            self.cond.notify_all()
        log.info("revision_testing", op=update.op, rev=update.rev, commit_delay=commit_delay)
        return True

    def resume(self, rev: str, old: Optional[str]) -> None:
        """Carry on a reboot transition after the reboot: ``rev`` is running, its goals are awaited.

        Runs in a thread of its own from :meth:`start`; the engine was handed
        ``rev`` at boot and is bringing it up.
        """
        revision = self._steps.revisions.get(rev)
        old_revision = self._steps.revisions.get(old) if old is not None else None
        update = Update(op=LOCAL_RUN, rev=rev, old=old, old_revision=old_revision,
                        containers=frozenset(revision.containers) if revision else frozenset(), reboot=True,
                        switched=True)
        with self.cond:
            if self.update is not None or self._stopping:
                return
            self.update = update
        log.info("revision_transition_resumed", rev=rev, old=old)
        self._core.hook.pvcore_activity(core=self._core, name="update", active=True)
        timeout = goals_timeout(self._core)
        try:
            self._progress(rev, "INPROGRESS", TRYING)
            if revision is None:
                ok, message = False, STATE_NOT_FOUND
            else:
                # The engine already runs it: nothing changed, so nothing restarts;
                # this only waits for the status goals.
                ok, message = self._run_engine(revision, True, timeout, update)
        except Exception:
            log.exception("revision_transition_crashed", op=LOCAL_RUN, rev=rev)
            ok, message = False, INTERNAL_ERROR
        self._tested(update, ok, message, timeout)

    def _run_engine(self, revision, only_changed: bool, timeout: float, update: Optional[Update] = None):
        result = self._core.call("pv_containers_run_revision", revision=revision, only_changed=only_changed,
                                 timeout=timeout)
        if result is None:
            return False, "No container engine"
        ok, message = result
        if update is not None and not ok:
            update.failure_detail = str(getattr(result, "detail", "") or "")
        return bool(ok), message or ""

    def _roll_back(self, update: Update, message: str, timeout: float) -> None:
        rev, old, old_revision = update.rev, update.old, update.old_revision
        log.error("revision_transition_failed", op=update.op, rev=rev, old=old, reason=message)
        power = real_power(self._core) if update.reboot else None
        try:
            if not update.switched:
                log.info("revision_not_switched", rev=rev, running=old)  # nothing to undo
            elif old is not None and old_revision is not None:
                try:
                    self._set_running(old, False)
                except OSError as exc:
                    # current still names rev: the next boot rolls the try back (Steps.start)
                    log.error("rollback_not_recorded", rev=rev, to=old, error=str(exc))
                if power is None:
                    # A non-reboot transition restarts only what it changed.
                    ok, back_message = self._run_engine(old_revision, not update.reboot, timeout)
                    if ok:
                        log.info("revision_rolled_back", rev=rev, to=old)
                    else:
                        log.error("revision_rollback_failed", rev=rev, to=old, reason=back_message)
            else:
                log.error("revision_rollback_impossible", rev=rev, old=old)
        finally:
            self._free_slot(update)
        try:
            self._progress(rev, "ERROR", message, _log_line(message, update.failure_detail))
        finally:
            self._end(update)
        if power is not None and update.switched and old is not None and old_revision is not None:
            # Upstream rolls a reboot transition back by rebooting into the committed revision.
            log.warning("revision_rollback_reboot", rev=rev, to=old)
            power.reboot(f"Rollback from revision {rev}")

    def _finish(self, update: Update) -> None:
        if update.failure is not None:
            self._roll_back(update, update.failure, goals_timeout(self._core))
            return
        pending = list(self._core.call("pv_containers_stability_pending", default=()) or ())
        if pending:
            # The commit is held until every container survived its stable_timeout.
            if not update.stability_noted:
                update.stability_noted = True
                self._progress(update.rev, "TESTING", STABILITY_WAIT)
                log.info("revision_stability_wait", rev=update.rev, containers=pending)
            with self.cond:
                if self.update is update:
                    update.commit_at = self.clock() + (0 if update.failure else STABILITY_POLL)
                self.cond.notify_all()
            return
        committed = update.reboot
        refused = None
        try:
            if committed and not self._steps.commit(update.rev):
                log.error("revision_commit_failed", rev=update.rev)
        except OSError as exc:
            # As upstream when its bootloader refuses the commit: ERROR, the
            # revision runs on uncommitted and the next boot rolls it back.
            log.error("revision_commit_failed", rev=update.rev, error=str(exc))
            refused = (write_failed(exc), f"could not set revision {update.rev} as the rollback point: {exc}")
        finally:
            self._free_slot(update)
        try:
            if refused is not None:
                self._progress(update.rev, "ERROR", refused[0], _log_line(*refused))
            elif committed:
                self._progress(update.rev, "DONE", DONE)
            else:
                self._progress(update.rev, "UPDATED", UPDATED)
            log.info("revision_transition_done", op=update.op, rev=update.rev, old=update.old,
                     committed=committed and refused is None)
        finally:
            self._end(update)

    def _free_slot(self, update: Update) -> bool:
        """Let the next transition start; whether none holds the slot now.

        Called before the final progress is written: a client that reads
        UPDATED, DONE or ERROR may send its next command (a reboot) at once
        and must not meet "an update is ongoing" (docs/protocol.md). So the
        slot may already hold that next update when ``update`` ends: only
        ``update`` itself is taken out of it.
        """
        with self.cond:
            if self.update is update:
                self.update = None
                self.cond.notify_all()
            return self.update is None

    def _end(self, update: Update) -> None:
        if self._free_slot(update):
            self._core.hook.pvcore_activity(core=self._core, name="update", active=False)

    # -- the thread -----------------------------------------------------------------------

    def start(self) -> None:
        with self.cond:
            self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()
        resume = self._steps.resume
        if resume is not None:
            self._steps.resume = None
            self._resumer = threading.Thread(target=self.resume, args=resume, name=self.name + ".resume",
                                             daemon=True)
            self._resumer.start()

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
            self._end(update)

    def _due(self) -> Optional[Update]:
        """Wait until the update's commit deadline passes (or a stop); return it then."""
        with self.cond:
            while not self._stopping:
                update = self.update
                deadline = update.commit_at if update is not None else None
                now = self.clock()
                if deadline is not None and deadline <= now:
                    update.commit_at = None
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
                self._end(update)
