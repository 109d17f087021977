"""The revision trails on disk: ``<storage>/trails/<rev>/`` (docs/protocol.md §D1.2).

Everything that changes a trail goes through :class:`Trails`, under its lock,
and is atomic: a new revision is assembled in a hidden staging directory and
renamed into place, files are replaced with :func:`pvcore.fsutil.atomic_write`,
a removed revision is first renamed away, ``current`` is swapped with a
symlink + rename. Staging entries are named ``.<pid>-<random>.tmp`` so a
sweeper can tell a crashed worker's leftovers from work in flight.

A progress the disk cannot take (a full storage partition) is not lost: it is
kept in memory, served by ``GET /steps/{rev}/progress`` and ``GET /steps``
instead of the file, and written by :meth:`Trails.flush_progress` — before the
next progress write and from pv_steps' retry loop — once there is space
(docs/protocol.md §7.9, "Full storage").
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import structlog

from pvcore.body import dumps
from pvcore.fsutil import atomic_write, fsync_dir
from pvcore.supervisor import pid_alive

from pv_steps import names, objects_index, scan
from pv_steps.names import CURRENT, LOCALS

log = structlog.get_logger(__name__)

_STAGING = re.compile(r"\.(?P<pid>\d+)-[0-9a-f]+\.tmp\Z")

#: ``progress`` percentage by status (docs/protocol.md §D3.1); unknown statuses show 0.
PROGRESS_BY_STATUS = {
    "NEW": 0, "QUEUED": 5, "DOWNLOADING": 25, "INPROGRESS": 50, "TESTING": 75,
    "UPDATED": 100, "DONE": 100, "WONTGO": 100, "ERROR": 100,
}
LOGS_MAX = 4096


def progress_doc(status: str, message: str, retries: int = 0, logs: Optional[str] = None) -> Dict[str, Any]:
    """The progress document, keys in upstream's order."""
    doc: Dict[str, Any] = {
        "status": status,
        "status-msg": message,
        "progress": PROGRESS_BY_STATUS.get(status, 0),
        "retries": retries,
    }
    if logs is not None:
        doc["logs"] = logs
    return doc


def progress_json(status: str, message: str, retries: int = 0, logs: Optional[str] = None) -> bytes:
    """The compact progress document as stored and served."""
    return dumps(progress_doc(status, message, retries, logs))


def _remove_tree(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class Trails:
    """The ``trails/`` directory of one storage dir."""

    #: Called as ``on_progress(rev, doc)`` after a progress was rewritten
    #: (the plugin publishes ``revision.progress``); outside the lock.
    on_progress: Optional[Callable[[str, Dict[str, Any]], None]] = None

    def __init__(self, storage_dir: str):
        self.storage_dir = storage_dir
        self.root = os.path.join(storage_dir, "trails")
        self.lock = threading.RLock()
        #: rev → (status, message, logs, document shown): progress the disk could not take yet
        self._unsaved: Dict[str, Tuple[str, str, Optional[str], Dict[str, Any]]] = {}

    # -- names and paths ------------------------------------------------------

    def running(self) -> Optional[str]:
        """The revision ``trails/current`` points at, or ``None``."""
        try:
            target = os.readlink(os.path.join(self.root, CURRENT))
        except OSError:
            return None
        if os.path.isabs(target):
            target = os.path.relpath(target, self.root)
        target = os.path.normpath(target)
        return names.normalize(target, allow_current=False)

    def resolve(self, rev: Optional[str]) -> Optional[str]:
        """The concrete revision name for ``rev`` (``current`` → its target), or ``None``."""
        rev = names.normalize(rev)
        if rev == CURRENT:
            return self.running()
        return rev

    def path(self, rev: Optional[str]) -> Optional[str]:
        """Directory of revision ``rev`` (existing or not), never outside ``trails/``."""
        rev = self.resolve(rev)
        if rev is None:
            return None
        path = os.path.join(self.root, rev)
        # NOTE: names are already single safe components; this also refuses a
        # planted symlink that would lead out of trails/.
        real_root = os.path.realpath(self.root)
        real = os.path.realpath(path)
        if os.path.dirname(real) not in (real_root, os.path.join(real_root, LOCALS)):
            return None
        return path

    def existing(self, rev: Optional[str]) -> Optional[str]:
        """Like :meth:`path`, but ``None`` unless the revision directory exists."""
        path = self.path(rev)
        return path if path is not None and os.path.isdir(path) else None

    def names(self) -> List[str]:
        """Every revision: remote ones sorted as strings, then ``locals/*`` sorted."""
        remote = [n for n in self._dirs(self.root) if n not in (CURRENT, LOCALS)]
        local = [LOCALS + "/" + n for n in self._dirs(os.path.join(self.root, LOCALS))]
        return sorted(remote) + sorted(local)

    @staticmethod
    def _dirs(directory: str) -> List[str]:
        try:
            entries = os.scandir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return []
        with entries:
            return [e.name for e in entries
                    if e.is_dir(follow_symlinks=False) and names.valid_component(e.name, names.REMOTE_NAME_MAX)]

    # -- reading --------------------------------------------------------------

    def state_path(self, rev: Optional[str]) -> Optional[str]:
        path = self.path(rev)
        return None if path is None else os.path.join(path, ".pvr", "json")

    def state(self, rev: Optional[str]) -> Optional[Dict[str, Any]]:
        """The parsed state JSON, or ``None`` (no such revision, unreadable, not an object)."""
        path = self.state_path(rev)
        return None if path is None else scan.load_state(path)

    def objects(self, rev: Optional[str]) -> Optional[List[str]]:
        """Every top-level value of the state that is a sha256, sorted; ``None`` if unreadable.

        Read from the revision's object index (:mod:`pv_steps.objects_index`);
        an index that is missing or does not describe the state is rebuilt
        from the state, in bounded memory, and written for the next time.
        """
        trail = self.path(rev)
        if trail is None:
            return None
        path = os.path.join(trail, ".pvr", "json")
        pv = os.path.join(trail, ".pv")
        try:
            before = os.stat(path)
        except OSError:
            return None
        shas = objects_index.read(pv, before)
        if shas is not None:
            return shas
        try:
            scanned = scan.scan_state(path, lambda key: False)
            after = os.stat(path)
        except OSError:
            return None
        if scanned is None:
            return None
        if objects_index.fingerprint(after) == objects_index.fingerprint(before):
            try:
                objects_index.write(pv, after, scanned.objects)
                log.info("revision_index_rebuilt", rev=rev, objects=len(scanned.objects))
            except OSError as exc:  # e.g. a read-only trail: answer anyway
                log.warning("revision_index_not_written", rev=rev, error=str(exc))
        return scanned.objects

    def written_at(self, rev: str) -> Optional[float]:
        """When ``rev`` was last written: its state JSON, progress or directory (mtime)."""
        path = self.existing(rev)
        if path is None:
            return None
        times = []
        for sub in ("", os.path.join(".pvr", "json"), os.path.join(".pv", "progress")):
            try:
                times.append(os.stat(os.path.join(path, sub)).st_mtime)
            except OSError:
                pass
        return max(times, default=None)

    # -- writing --------------------------------------------------------------

    def staging_path(self) -> str:
        """A fresh hidden ``.<pid>-<random>.tmp`` path inside ``trails/``."""
        os.makedirs(self.root, exist_ok=True)
        return os.path.join(self.root, f".{os.getpid()}-{secrets.token_hex(8)}.tmp")

    @contextlib.contextmanager
    def _publishing(self, target: str):
        """Yield a fresh staging folder to fill, then publish it as ``target`` in one
        rename: a new revision appears complete or not at all. On any failure the
        staging folder is removed. The caller holds the lock."""
        staging = self.staging_path()
        try:
            yield staging
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(staging, target)
        except BaseException:
            _remove_tree(staging)
            raise
        fsync_dir(os.path.dirname(target))

    def progress_status(self, rev: str) -> Optional[str]:
        """The ``status`` of ``rev``'s progress JSON, or ``None`` if unreadable."""
        return self.progress_of(rev)[0]

    def progress_of(self, rev: str):
        """``(status, status-msg)`` of ``rev``'s progress JSON; ``(None, None)`` if unreadable."""
        unsaved = self.unsaved_progress(rev)
        if unsaved is not None:
            return unsaved.get("status"), unsaved.get("status-msg")
        path = self.existing(rev)
        try:
            with open(os.path.join(path, ".pv", "progress"), "rb") as fh:
                doc = json.loads(fh.read())
            return doc.get("status"), doc.get("status-msg")
        except (OSError, TypeError, ValueError, AttributeError):
            return None, None

    def write_progress(self, rev: str, status: str, message: str,
                       logs: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """Rewrite ``.pv/progress`` (and ``.pv/logs`` when ``logs`` is given); keeps ``retries``.

        :return: the progress document written, ``None`` for an unknown revision.
        """
        with self.lock:
            self.flush_progress()
            try:
                doc = self._write_progress(rev, status, message, logs)
                self._unsaved.pop(rev, None)
            except OSError as exc:
                doc = self._hold_progress(rev, status, message, logs, exc)
        if doc is not None and self.on_progress is not None:
            self.on_progress(rev, doc)
        return doc

    def _hold_progress(self, rev: str, status: str, message: str, logs: Optional[str],
                       exc: OSError) -> Dict[str, Any]:
        """Keep a progress the disk refused in memory, as it will be written."""
        retries, shown = 0, logs[:LOGS_MAX] if logs is not None else None
        path = self.existing(rev)
        if path is not None:
            try:
                with open(os.path.join(path, ".pv", "progress"), "rb") as fh:
                    retries = int(json.loads(fh.read()).get("retries", 0))
            except (OSError, ValueError, TypeError, AttributeError):
                pass
            if shown is None:
                try:
                    with open(os.path.join(path, ".pv", "logs"), "rb") as fh:
                        shown = fh.read(LOGS_MAX).decode("utf-8", "replace")
                except OSError:
                    pass
        doc = progress_doc(status, message, retries, shown)
        self._unsaved[rev] = (status, message, logs, doc)
        log.warning("progress_not_written", rev=rev, status=status, error=str(exc))
        return doc

    def unsaved_progress(self, rev: Optional[str]) -> Optional[Dict[str, Any]]:
        """The progress of ``rev`` held in memory because the disk refused it, or ``None``."""
        rev = self.resolve(rev)
        with self.lock:
            held = self._unsaved.get(rev) if rev is not None else None
        return None if held is None else held[3]

    def flush_progress(self) -> bool:
        """Write the progress documents the disk refused; ``True`` when none is left.

        Stops at the first one that fails again; never raises. A revision
        removed meanwhile is forgotten.
        """
        if not self._unsaved:  # the common case, without the trails' lock
            return True
        with self.lock:
            for rev, (status, message, logs, _doc) in list(self._unsaved.items()):
                try:
                    if self.existing(rev) is None:
                        self._publish_unknown(rev, status, message)
                    if self._write_progress(rev, status, message, logs) is None:
                        log.info("progress_held_dropped", rev=rev)
                except OSError as exc:
                    log.debug("progress_flush_failed", rev=rev, error=str(exc))
                    return False
                del self._unsaved[rev]
                log.info("progress_written_late", rev=rev, status=status)
            return True

    def forget_progress(self, rev: str) -> None:
        """Drop a held progress: ``rev`` was installed again or removed."""
        with self.lock:
            self._unsaved.pop(rev, None)

    def _write_progress(self, rev: str, status: str, message: str,
                        logs: Optional[str]) -> Optional[Dict[str, Any]]:
        with self.lock:
            path = self.existing(rev)
            if path is None:
                return None
            pv = os.path.join(path, ".pv")
            os.makedirs(pv, exist_ok=True)
            retries = 0
            try:
                with open(os.path.join(pv, "progress"), "rb") as fh:
                    retries = int(json.loads(fh.read()).get("retries", 0))
            except (OSError, ValueError, TypeError, AttributeError):
                pass
            if logs is not None:
                atomic_write(os.path.join(pv, "logs"), logs)
            shown = None
            try:
                with open(os.path.join(pv, "logs"), "rb") as fh:
                    shown = fh.read(LOGS_MAX).decode("utf-8", "replace")
            except FileNotFoundError:
                pass
            doc = progress_doc(status, message, retries, shown)
            atomic_write(os.path.join(pv, "progress"), dumps(doc))
            return doc

    def record_unknown(self, rev: str, status: str, message: str) -> bool:
        """Give a revision that does not exist a progress, as upstream does when
        asked to run it: ``trails/<rev>/.pv/progress`` appears whole, in one
        rename, then is published like any progress. ``False`` for a name that
        can never be a revision."""
        held = None
        with self.lock:
            if self.existing(rev) is None:
                if self.path(rev) is None:
                    return False
                try:
                    self._publish_unknown(rev, status, message)
                except OSError as exc:  # shown from memory, written later (flush_progress)
                    held = self._hold_progress(rev, status, message, None, exc)
        if held is None:
            return self.write_progress(rev, status, message) is not None
        if self.on_progress is not None:  # outside the lock, as every progress event
            self.on_progress(rev, held)
        return True

    def _publish_unknown(self, rev: str, status: str, message: str) -> None:
        target = self.path(rev)
        if target is None:
            return
        with self._publishing(target) as staging:
            os.makedirs(os.path.join(staging, ".pv"))
            atomic_write(os.path.join(staging, ".pv", "progress"), progress_json(status, message))

    def write_commitmsg(self, rev: str, message: bytes) -> bool:
        with self.lock:
            path = self.existing(rev)
            if path is None:
                return False
            os.makedirs(os.path.join(path, ".pv"), exist_ok=True)
            atomic_write(os.path.join(path, ".pv", "commitmsg"), message)
            return True

    def install(self, rev: str, json_file: str, objects: List[str]) -> None:
        """Make the (validated) state in ``json_file`` revision ``rev``; consumes ``json_file``.

        ``objects`` are the sha256s it references, written to its object
        index. A new revision appears complete in one rename; an existing one
        gets its index, then its ``.pvr/json`` replaced (a crash in between
        leaves an index for another file: ignored, rebuilt) and forgets that
        it was done or failed.
        """
        ready = progress_json("NEW", "Update ready to be run")
        json_stat = os.stat(json_file)
        with self.lock:
            target = self.path(rev)
            if os.path.isdir(target):
                os.makedirs(os.path.join(target, ".pvr"), exist_ok=True)
                objects_index.write(os.path.join(target, ".pv"), json_stat, objects)
                os.replace(json_file, os.path.join(target, ".pvr", "json"))
                fsync_dir(os.path.join(target, ".pvr"))
                for stale in ("done", "logs"):
                    try:
                        os.unlink(os.path.join(target, ".pv", stale))
                    except FileNotFoundError:
                        pass
                os.makedirs(os.path.join(target, ".pv"), exist_ok=True)
                atomic_write(os.path.join(target, ".pv", "progress"), ready)
                self.forget_progress(rev)  # a held ERROR of the old state must not come back
                return
            with self._publishing(target) as staging:
                os.makedirs(os.path.join(staging, ".pvr"))
                os.makedirs(os.path.join(staging, ".pv"))
                os.replace(json_file, os.path.join(staging, ".pvr", "json"))
                objects_index.write(os.path.join(staging, ".pv"), json_stat, objects)
                atomic_write(os.path.join(staging, ".pv", "progress"), ready)
                fsync_dir(os.path.join(staging, ".pvr"))
            self.forget_progress(rev)

    def replace_with_state(self, rev: str, data: bytes, objects: Optional[List[str]] = None) -> None:
        """Make ``rev`` a fresh revision holding only state ``data`` (MAKE_FACTORY).

        ``objects``: the sha256s it references, for its index (else built on first use).
        """
        with self.lock:
            staging = self.staging_path()
            try:
                os.makedirs(os.path.join(staging, ".pvr"))
                os.makedirs(os.path.join(staging, ".pv"))
                atomic_write(os.path.join(staging, ".pvr", "json"), data)
                if objects is not None:
                    objects_index.write(os.path.join(staging, ".pv"),
                                        os.stat(os.path.join(staging, ".pvr", "json")), objects)
                atomic_write(os.path.join(staging, ".pv", "progress"), progress_json("NEW", "Update ready to be run"))
            except BaseException:
                _remove_tree(staging)
                raise
            target = self.path(rev)
            old = None
            if os.path.lexists(target):
                old = self.staging_path()
                os.rename(target, old)
            os.rename(staging, target)
            self.forget_progress(rev)
            fsync_dir(self.root)
            if old:
                _remove_tree(old)

    def remove(self, rev: str) -> bool:
        """Delete revision ``rev`` (its trail only: the owners of per-revision data
        delete theirs when told, event ``revision.collected``)."""
        with self.lock:
            path = self.existing(rev)
            if path is None:
                return False
            doomed = self.staging_path()
            os.rename(path, doomed)  # gone from listings at once
            self.forget_progress(rev)
            fsync_dir(os.path.dirname(path))
            _remove_tree(doomed)
            log.info("revision_removed", rev=rev)
            return True

    def point_current(self, rev: str) -> None:
        """Atomically repoint ``trails/current`` at ``rev`` (relative symlink)."""
        with self.lock:
            tmp = self.staging_path()
            os.symlink(rev, tmp)
            try:
                os.replace(tmp, os.path.join(self.root, CURRENT))
            except BaseException:
                _remove_tree(tmp)
                raise
            fsync_dir(self.root)

    def sweep_dead_staging(self) -> int:
        """Remove staging entries left by a worker that no longer exists."""
        removed = 0
        try:
            entries = os.listdir(self.root)
        except FileNotFoundError:
            return 0
        for name in entries:
            match = _STAGING.match(name)
            if match and int(match.group("pid")) != os.getpid() and not pid_alive(int(match.group("pid"))):
                _remove_tree(os.path.join(self.root, name))
                removed += 1
        if removed:
            log.info("trail_staging_swept", count=removed)
        return removed
