"""Revision bookkeeping: running / tried / committed revisions and their GC.

:class:`Steps` is the plugin's state (in ``core.stash``): the trails, the boot
record, and the transitions the engine and commands drive through hooks.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Iterable, List, Optional, Set

import structlog

from pv_steps.boot import BootRecord, BootState
from pv_steps.model import RevisionCache
from pv_steps.names import LOCALS
from pv_steps.trails import Trails

log = structlog.get_logger(__name__)

FACTORY = "0"
FACTORY_MESSAGE = "Factory revision"


#: Progress of a try that ran to its end without a commit: boot it again.
FINISHED_TRY = ("UPDATED", "DONE")
#: Progress of a try whose reboot transition rebooted the device: try it now.
REBOOTED_TRY = ("INPROGRESS", "Rebooting")

class Steps:
    """The revisions of one storage dir.

    :param gc_grace: seconds a revision written (installed, or given a
        progress) that recently is spared by garbage collection.
    :param gc_keep_locals: spare every ``locals/*`` revision from garbage
        collection (upstream reclaims them like any other).
    :param clock: wall clock (``time.time``), for the grace window.
    :param default_groups: the groups of a state that declares none
        (``default_groups_file``); upstream's shipped defaults when ``None``.
    """

    def __init__(self, storage_dir: str, gc_grace: float = 600.0, gc_keep_locals: bool = False,
                 clock: Callable[[], float] = time.time, default_groups=None):
        self.trails = Trails(storage_dir)
        self.boot = BootRecord(os.path.join(storage_dir, "boot", "pv.json"))
        self.lock = self.trails.lock
        self.gc_grace = gc_grace
        self.gc_keep_locals = gc_keep_locals
        self._clock = clock
        #: ``(rev, old)``: a reboot transition to carry on after this boot (:meth:`start`)
        self.resume = None
        #: the one interpretation of each revision's state (``pv_steps_revision``)
        self.revisions = RevisionCache(self.trails.resolve, self.trails.state_path, self.trails.state,
                                       default_groups=default_groups)

    # -- boot -------------------------------------------------------------------

    def start(self) -> None:
        """The boot decision, once per worker start (docs/protocol.md §D1.4, §D3.3).

        No record yet: ``pv_rev`` is what ``current`` points at (or ``0``).
        A ``try_once`` try is forgotten: ``current`` goes back to ``pv_rev``.
        A try that was interrupted (pvcore died before its progress reached
        UPDATED) falls back to ``pv_rev`` too, and its progress records ERROR
        ``Unexpected rollback``, as a rolled-back boot does upstream. An
        UPDATED try is booted again (upstream's bootloader boots ``pv_try``).
        A try whose progress says INPROGRESS ``Rebooting`` (a reboot
        transition rebooted the device) is booted and its update carried on
        (``resume``); the next interrupted boot of it rolls back as above.
        """
        with self.lock:
            self.trails.sweep_dead_staging()
            running = self.trails.running()
            if not self.boot.exists():
                state = BootState(pv_rev=running or FACTORY)
                if os.path.isdir(self.trails.root) and self._save_at_boot(state):
                    log.info("boot_record_created", pv_rev=state.pv_rev)
                if running is None and self.trails.existing(state.pv_rev):
                    self._first_boot(state.pv_rev)
                return
            state = self.boot.load()
            progress = self.trails.progress_of(state.pv_try) if state.pv_try is not None else (None, None)
            if progress == REBOOTED_TRY and not state.try_once and self.trails.existing(state.pv_try):
                # A reboot transition rebooted the device: this boot tries it, and
                # the updater carries the update on (Updater.resume).
                log.info("try_after_reboot", pv_try=state.pv_try, pv_rev=state.pv_rev)
                self.trails.point_current(state.pv_try)
                self.resume = (state.pv_try, state.pv_rev)
                return
            interrupted = state.pv_try is not None and progress[0] not in FINISHED_TRY
            if state.pv_try is not None and (state.try_once or interrupted):
                log.info("try_forgotten" if state.try_once else "try_interrupted_rollback",
                         pv_try=state.pv_try, pv_rev=state.pv_rev)
                if interrupted and not state.try_once and self.trails.existing(state.pv_try):
                    self.trails.write_progress(state.pv_try, "ERROR", "Unexpected rollback")
                state = BootState(pv_rev=state.pv_rev)
                self._save_at_boot(state)
                if self.trails.existing(state.pv_rev):
                    self.trails.point_current(state.pv_rev)
            elif running is None and self.trails.existing(state.pv_rev):
                self.trails.point_current(state.pv_rev)

    def _save_at_boot(self, state: BootState) -> bool:
        """Save the boot decision; a disk that refuses it (full) must not keep
        the device from booting: the record stays as it was, and the next
        start decides the same way again (logged)."""
        try:
            self.boot.save(state)
            return True
        except OSError as exc:
            log.error("boot_record_not_written", path=self.boot.path, pv_rev=state.pv_rev, error=str(exc))
            return False

    def _first_boot(self, rev: str) -> None:
        """A factory image's first start: storage holds only ``trails/0/.pvr/json``
        and ``objects/`` (upstream's layout), no ``current`` and no boot record.

        Revision ``rev`` becomes the running one at once, and the factory
        revision is marked as upstream marks it on its first boot: progress
        DONE ``Factory revision``, committed (docs/protocol.md §D1.4).
        """
        self.trails.point_current(rev)
        if rev == FACTORY and self.trails.progress_status(rev) is None:
            self.trails.write_progress(rev, "DONE", FACTORY_MESSAGE)
            path = self.trails.existing(rev)
            with open(os.path.join(path, ".pv", "done"), "ab"):
                pass
        log.info("factory_first_boot", rev=rev)

    def install_factory(self, data: bytes) -> bool:
        """Lay down state ``data`` as revision ``0`` of a device without
        revisions, as its first boot leaves a factory image (:meth:`_first_boot`)."""
        with self.lock:
            if self.trails.names():
                return False
            self.trails.replace_with_state(FACTORY, data)
            self.trails.write_progress(FACTORY, "DONE", FACTORY_MESSAGE)
            with open(os.path.join(self.trails.existing(FACTORY), ".pv", "done"), "ab"):
                pass
            self.trails.point_current(FACTORY)
            self.boot.save(BootState(pv_rev=FACTORY))
            log.info("factory_installed", rev=FACTORY)
            return True

    def refuse_boot(self, rev: str, reason: str) -> Optional[str]:
        """The running revision ``rev`` may not run (docs/protocol.md §D12.1).

        A revision being tried gets progress ERROR ``reason`` and ``current``
        goes back to the rollback point, which is returned. The rollback
        point itself has nowhere to go: ``None``.
        """
        with self.lock:
            state = self.boot_state()
            if rev == state.pv_rev or not self.trails.existing(state.pv_rev):
                return None
            self.trails.write_progress(rev, "ERROR", reason)
            self.boot.save(BootState(pv_rev=state.pv_rev))
            self.trails.point_current(state.pv_rev)
            log.warning("boot_rolled_back", rev=rev, to=state.pv_rev, reason=reason)
            return state.pv_rev

    def boot_state(self) -> BootState:
        with self.lock:
            if self.boot.exists():
                return self.boot.load()
            return BootState(pv_rev=self.trails.running() or FACTORY)

    # -- transitions ----------------------------------------------------------

    def set_running(self, rev: str, try_once: bool = False) -> Optional[bool]:
        """Point ``current`` at ``rev`` and record it as tried (not when it is ``pv_rev``).

        :raises OSError: the boot record or ``current`` could not be written (a
            full disk); then neither changed — a boot record already saved is
            put back, as far as the disk allows (logged when it does not).
        """
        with self.lock:
            rev = self.trails.resolve(rev)
            if rev is None or self.trails.existing(rev) is None:
                return None
            before = self.boot_state()
            if rev == before.pv_rev:  # a rollback, or re-running the committed revision
                state = BootState(pv_rev=before.pv_rev)
            else:
                state = BootState(pv_rev=before.pv_rev, pv_try=rev, try_once=bool(try_once))
            self.boot.save(state)
            try:
                self.trails.point_current(rev)
            except OSError:
                try:
                    self.boot.save(before)
                except OSError as exc:  # the next boot rolls the recorded try back (start)
                    log.error("boot_record_not_restored", rev=rev, error=str(exc))
                raise
            log.info("running_revision_set", rev=rev, try_once=try_once)
            return True

    def commit(self, rev: str) -> Optional[bool]:
        """``rev`` becomes the rollback point: ``pv_rev=rev``, no try, ``.pv/done``."""
        with self.lock:
            rev = self.trails.resolve(rev)
            path = self.trails.existing(rev) if rev else None
            if path is None:
                return None
            self.boot.save(BootState(pv_rev=rev))
            os.makedirs(os.path.join(path, ".pv"), exist_ok=True)
            with open(os.path.join(path, ".pv", "done"), "ab"):
                pass
            log.info("revision_committed", rev=rev)
            return True

    def make_factory(self, rev: Optional[str]) -> Optional[bool]:
        """Replace revision ``0`` by a fresh trail holding ``rev``'s state JSON."""
        with self.lock:
            source = self.trails.state_path(rev or "current")
            if source is None:
                return None
            try:
                with open(source, "rb") as fh:
                    data = fh.read()
            except OSError:
                return None
            self.trails.replace_with_state(FACTORY, data, self.trails.objects(rev or "current"))
            log.info("factory_revision_replaced", source=self.trails.resolve(rev or "current"))
            return True

    # -- garbage collection -------------------------------------------------------

    def in_use(self) -> List[str]:
        """What this plugin keeps: running, committed, tried and factory (and
        every local with ``gc_keep_locals``); see docs/protocol.md §7.7."""
        state = self.boot_state()
        keep = {FACTORY, state.pv_rev}
        running = self.trails.running()
        if running:
            keep.add(running)
        if state.pv_try:
            keep.add(state.pv_try)
        if self.gc_keep_locals:
            keep.update(rev for rev in self.trails.names() if rev.startswith(LOCALS + "/"))
        return sorted(keep)

    def collect(self, keep: Iterable[str]) -> List[str]:
        """Remove every revision not in ``keep`` nor written in the grace window.

        Returns the removed names. Local revisions go too, as upstream's GC
        does (there is no other way to delete one), unless ``gc_keep_locals``.
        The grace window spares a revision a client has just put and is
        about to run.
        """
        keep_set: Set[str] = set(keep)
        removed = []
        cutoff = self._clock() - self.gc_grace
        with self.lock:
            self.trails.sweep_dead_staging()
            # NOTE: recomputed under the lock: a revision made running since
            # the caller gathered ``keep`` must survive too.
            keep_set.update(self.in_use())
            for rev in self.trails.names():
                if rev in keep_set:
                    continue
                written = self.trails.written_at(rev)
                if written is not None and written > cutoff:
                    log.debug("revision_gc_spared", rev=rev, age_s=round(self._clock() - written))
                    continue
                if self.trails.remove(rev):
                    removed.append(rev)
        return removed

    def objects_in_use(self) -> Set[str]:
        """Objects of every revision that exists (GC runs after pruning revisions)."""
        shas: Set[str] = set()
        for rev in self.trails.names():
            objects = self.trails.objects(rev)
            if objects is None:
                log.warning("revision_state_unreadable", rev=rev)
                continue
            shas.update(objects)
        return shas
