"""One metadata store: an ordered key → value map persisted one file per key.

Layout (docs/protocol.md §D1.1, §D1.3, §D10):

* ``<storage>/cache/<dirname>/<key>`` holds each value (upstream's layout),
  written atomically through a temp file in pv_metadata's own
  ``<storage>/pvcore/pv_metadata/<dirname>.staging/``: every name in
  ``<dirname>/`` is a key (``.x.tmp`` is a valid key, so temp files there
  could not be told from values), and the staging dir is emptied at load;
* ``<storage>/pvcore/pv_metadata/<dirname>.order`` is the order index (kept
  in ``cache/`` before release 0.2: moved there at load), a JSON array of
  keys, oldest first. File times cannot give the order because an update
  replaces the file (new inode, new ctime) while it must keep the key's
  place. The index is rewritten when a key is added or removed, after the
  value file, so a crash in between leaves a value file the index does not
  name yet: such files are adopted at load as the newest keys (by mtime);
  index entries without a file are dropped;
* ``<run>/<view>/<key>`` and, for a dotted key ``a.b``, ``<run>/<view>.a/b``
  are the per-key views containers see (docs/protocol.md §7.10/§7.11), rebuilt at
  load and kept in sync on every change.

A full storage partition (docs/protocol.md §7.11, "Full storage"): a write a
client asked for (``put``) fails whole — the memory and the disk keep the old
value — and the caller answers 507. A write pvcore makes on an owner's behalf
(``put(..., defer=True)``: device facts, the automatic device keys) is taken
in memory and in the views at once, and its file is written later
(:meth:`MetaStore.flush`: before every later write of any key, and from the
refresh loop). The order index is only an order: when it cannot be rewritten
the value stays durable (a new key's file is adopted as the newest key at
load anyway) and the index is rewritten by the next flush.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import structlog

from pvcore.fsutil import atomic_write, fsync_dir, sweep_temp_files

log = structlog.get_logger(__name__)

#: Longest value accepted over HTTP and kept when loading a file (docs/protocol.md §D10).
MAX_VALUE = 4096
MAX_KEY_BYTES = 255


def valid_key(key: str) -> bool:
    """A key is also a file name: non-empty, ≤ 255 bytes, no ``/``, not ``.``
    or ``..``, no NUL or other control character."""
    if not key or key in (".", "..") or "/" in key:
        return False
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        return False
    try:
        return len(key.encode("utf-8")) <= MAX_KEY_BYTES
    except UnicodeEncodeError:
        return False


def _no_constants(name):
    raise ValueError(name)


def is_json_container(value: str) -> bool:
    """Does ``value`` parse (strictly) as a JSON object or array?

    Such values are embedded raw in listings; the strict parse (no NaN, no
    control characters in strings) guarantees the listing stays valid JSON.
    """
    stripped = value.strip()
    if not stripped or stripped[0] not in "{[":
        return False
    try:
        doc = json.loads(stripped, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return False
    return isinstance(doc, (dict, list))


@dataclass(frozen=True)
class Entry:
    value: str
    raw_json: bool


class MetaStore:
    """An ordered metadata map with its persisted files and run-dir views.

    Reads take a short lock; writers are serialised by :attr:`write_lock`
    (re-entrant), which callers also hold while firing change hooks so that
    listeners see changes in the order they were made.

    :param persist_dir: where values live, one file per key.
    :param view_dir: ``<run>/user-meta`` or ``<run>/device-meta``.
    :param own_dir: where the order index and the staging dir live
        (pv_metadata's ``core.data_dir()``); by default beside
        ``persist_dir``, where releases before declared ownership kept them
        (they are moved at load).
    """

    def __init__(self, persist_dir: str, view_dir: str, own_dir: Optional[str] = None):
        self.persist_dir = persist_dir
        parent, base = os.path.split(persist_dir.rstrip("/"))
        #: where earlier releases kept the index and the staging dir (cache/)
        self.legacy = (os.path.join(parent, base + ".order"), os.path.join(parent, "." + base + ".staging"))
        folder = own_dir or parent
        self.order_path = os.path.join(folder, base + ".order")
        self.staging_dir = os.path.join(folder, base + ".staging" if own_dir else "." + base + ".staging")
        self.view_dir = view_dir
        self._entries: Dict[str, Entry] = {}  # insertion order = oldest first
        self._lock = threading.Lock()
        self.write_lock = threading.RLock()
        #: key → value held in memory whose file could not be written yet (defer=True)
        self._unsaved: Dict[str, str] = {}
        #: the order index could not be rewritten: the next flush does it
        self._order_unsaved = False

    # -- loading --------------------------------------------------------------

    def load(self) -> None:
        """Read the persisted keys and rebuild the run-dir views."""
        os.makedirs(self.persist_dir, exist_ok=True)
        self._migrate()
        # NOTE: never sweep persist_dir itself: a key may look like a temp file.
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        sweep_temp_files(os.path.dirname(self.order_path))
        order = self._read_order()
        names = set(os.listdir(self.persist_dir))
        keys = [key for key in order if key in names and valid_key(key)]
        known = set(keys)
        strays = [name for name in names if name not in known and valid_key(name)]
        strays.sort(key=lambda name: self._mtime(name))
        entries: Dict[str, Entry] = {}
        for key in keys + strays:
            value = self._read_value(key)
            if value is not None:
                entries[key] = Entry(value, is_json_container(value))
        with self._lock:
            self._entries = entries
        if list(entries) != order:
            self._save_order(list(entries))
        self._rebuild_views()

    def _migrate(self) -> None:
        """Move an index an earlier release kept in ``cache/`` to where it lives now:
        an upgrade keeps every key's place (docs/architecture.md §2)."""
        old_order, old_staging = self.legacy
        if old_order != self.order_path and os.path.exists(old_order):
            if not os.path.exists(self.order_path):
                os.replace(old_order, self.order_path)
                fsync_dir(os.path.dirname(self.order_path))
                log.info("meta_order_migrated", old=old_order, new=self.order_path)
            else:
                os.unlink(old_order)
        if old_staging != self.staging_dir:
            shutil.rmtree(old_staging, ignore_errors=True)

    def _read_order(self) -> List[str]:
        try:
            with open(self.order_path, "rb") as fh:
                doc = json.loads(fh.read().decode("utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            log.warning("meta_order_unreadable", path=self.order_path)
            return []
        if not isinstance(doc, list):
            return []
        seen, keys = set(), []
        for key in doc:
            if isinstance(key, str) and key not in seen:
                seen.add(key)
                keys.append(key)
        return keys

    def _mtime(self, name: str) -> float:
        try:
            return os.stat(os.path.join(self.persist_dir, name)).st_mtime
        except OSError:
            return 0.0

    def _read_value(self, key: str) -> Optional[str]:
        path = os.path.join(self.persist_dir, key)
        try:
            if not os.path.isfile(path):
                return None
            with open(path, "rb") as fh:
                data = fh.read(MAX_VALUE)
        except OSError:
            log.warning("meta_value_unreadable", path=path)
            return None
        return data.decode("utf-8", errors="replace")

    # -- reading --------------------------------------------------------------

    def get(self, key: str) -> Optional[str]:
        with self._lock:
            entry = self._entries.get(key)
        return entry.value if entry else None

    def snapshot(self) -> Dict[str, str]:
        """Key → value, oldest first."""
        with self._lock:
            return {key: entry.value for key, entry in self._entries.items()}

    def listing(self) -> List[Tuple[str, Entry]]:
        """``(key, entry)`` pairs, most recently added first."""
        with self._lock:
            items = list(self._entries.items())
        items.reverse()
        return items

    # -- writing --------------------------------------------------------------

    def put(self, key: str, value: str, defer: bool = False) -> bool:
        """Store ``value`` under ``key``; ``False`` if it was already so.

        The caller validated ``key``. The value file is durable before this
        returns; a new key is also recorded in the order index (or, when that
        cannot be rewritten, by the next :meth:`flush`).

        :param defer: when the value file cannot be written (``OSError``: a
            full disk), keep the value in memory and in the views and write it
            on a later :meth:`flush`; without it the ``OSError`` is raised and
            nothing changed, in memory or on disk.
        """
        with self.write_lock:
            self.flush()
            with self._lock:
                old = self._entries.get(key)
            if old is not None and old.value == value:
                return False
            try:
                self._write_value(key, value.encode("utf-8"))
            except OSError as exc:
                if not defer:
                    raise
                self._unsaved[key] = value
                log.warning("meta_write_deferred", path=os.path.join(self.persist_dir, key), error=str(exc))
            else:
                self._unsaved.pop(key, None)
            with self._lock:
                self._entries[key] = Entry(value, is_json_container(value))
                order = list(self._entries) if old is None else None
            if order is not None:
                self._save_order(order)
            self._write_view(key, value)
            return True

    def delete(self, key: str) -> bool:
        """Remove ``key``; ``False`` if it did not exist."""
        with self.write_lock:
            self.flush()
            with self._lock:
                if key not in self._entries:
                    return False
            try:
                os.unlink(os.path.join(self.persist_dir, key))
                fsync_dir(self.persist_dir)
            except FileNotFoundError:
                pass
            self._unsaved.pop(key, None)
            with self._lock:
                del self._entries[key]
                order = list(self._entries)
            self._save_order(order)
            self._remove_view(key)
            return True

    @property
    def unsaved(self) -> int:
        """How many writes are held in memory, waiting for space (value files, and the index)."""
        with self.write_lock:
            return len(self._unsaved) + int(self._order_unsaved)

    def flush(self) -> bool:
        """Write what a full disk held back (``defer``, the order index); ``True`` when nothing is left.

        Stops at the first write that fails again; never raises it.
        """
        with self.write_lock:
            if not self._unsaved and not self._order_unsaved:
                return True
            try:
                for key, value in list(self._unsaved.items()):
                    self._write_value(key, value.encode("utf-8"))
                    del self._unsaved[key]
                    log.info("meta_write_caught_up", path=os.path.join(self.persist_dir, key))
                if self._order_unsaved:
                    with self._lock:
                        order = list(self._entries)
                    self._write_order(order)
                    self._order_unsaved = False
            except OSError as exc:
                log.debug("meta_flush_failed", dir=self.persist_dir, error=str(exc),
                          left=len(self._unsaved) + int(self._order_unsaved))
                return False
            return True

    def _save_order(self, keys: List[str]) -> None:
        # NOTE: the value files are what counts; an index that cannot be
        # rewritten now is rewritten by the next flush (see the module doc).
        try:
            self._write_order(keys)
            self._order_unsaved = False
        except OSError as exc:
            self._order_unsaved = True
            log.warning("meta_order_write_deferred", path=self.order_path, error=str(exc))

    def _write_value(self, key: str, data: bytes) -> None:
        """Durably replace ``<persist_dir>/<key>`` via a temp file in the staging dir."""
        os.makedirs(self.persist_dir, exist_ok=True)
        os.makedirs(self.staging_dir, exist_ok=True)
        atomic_write(os.path.join(self.persist_dir, key), data, tmp_dir=self.staging_dir)

    def _write_order(self, keys: List[str]) -> None:
        atomic_write(self.order_path, json.dumps(keys, ensure_ascii=False))

    # -- run-dir views ----------------------------------------------------------

    def _view_paths(self, key: str) -> List[str]:
        paths = [os.path.join(self.view_dir, key)]
        owner, dot, sub = key.partition(".")
        if dot and owner and sub not in ("", ".", ".."):
            paths.append(os.path.join(self.view_dir + "." + owner, sub))
        return paths

    def _write_view(self, key: str, value: str) -> None:
        for path in self._view_paths(key):
            try:
                _replace(path, value.encode("utf-8"))
            except OSError as exc:
                log.warning("meta_view_write_failed", path=path, error=str(exc))

    def view_for(self, container: Optional[str]) -> str:
        """The view of every key (``None``), or of container ``container``'s own keys; created if missing."""
        path = self.view_dir if container is None else self.view_dir + "." + container
        os.makedirs(path, exist_ok=True)
        return path

    def _remove_view(self, key: str) -> None:
        for path in self._view_paths(key):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("meta_view_remove_failed", path=path, error=str(exc))
            # NOTE: a per-container dir stays when it is empty: a runtime may
            # have bound it into a running container (pv_metadata_views).

    def _rebuild_views(self) -> None:
        parent, base = os.path.split(self.view_dir)
        os.makedirs(parent, exist_ok=True)
        for name in os.listdir(parent):
            if name == base or name.startswith(base + "."):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        os.makedirs(self.view_dir, exist_ok=True)
        for key, value in self.snapshot().items():
            self._write_view(key, value)


def _replace(path: str, data: bytes) -> None:
    """Temp file + rename, without fsync: the run dir is volatile and rebuilt
    from the persisted store at every start, so only tearing matters here."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, data, durable=False)


def render_listing(items) -> bytes:
    """The ``GET /user-meta`` body: a JSON object in listing order.

    Keys are always escaped and empty values kept (fixing docs/protocol.md §12.18);
    JSON object/array values are embedded raw, the rest as strings.
    """
    parts = []
    for key, entry in items:
        value = entry.value.strip() if entry.raw_json else json.dumps(entry.value, ensure_ascii=False)
        parts.append(json.dumps(key, ensure_ascii=False) + ":" + value)
    return ("{" + ",".join(parts) + "}").encode("utf-8")

