"""The layered configuration: one value per level per entry, the highest wins.

Keeping every level's value (rather than only the winner) is what makes
"remove the user-meta key → back to the pre-metadata value" (docs/protocol.md
§D9.1) a plain deletion.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import structlog

from pv_config.table import INPUT_ALIASES, RANK, Entry
from pv_config.values import parse

log = structlog.get_logger(__name__)


class Config:
    """Configuration entries and their per-level values.

    :param entries: the entry table (:func:`pv_config.table.build_entries`).

    The metadata level follows the user metadata through :meth:`meta_changed`
    (fed by ``meta.user`` events), which keeps its own copy of the keys.

    :ivar on_change: called as ``on_change(entry, value, level)`` after the
        effective value or level of an entry changed (the plugin publishes
        ``config.changed``); ``None`` while the configuration is loading.
    """

    on_change: Optional[Callable[[Entry, Any, str], None]] = None

    def __init__(self, entries: Sequence[Entry]):
        self.entries = list(entries)
        self._by_key = {entry.key: entry for entry in self.entries}
        self._aliases: Dict[str, Entry] = {e.alias: e for e in self.entries if e.alias}
        self._aliases.update({alias: self._by_key[key] for alias, key in INPUT_ALIASES.items()})
        self._levels: Dict[str, Dict[str, Any]] = {e.key: {"default": e.default} for e in self.entries}
        self._lock = threading.Lock()
        self._meta: Dict[str, str] = {}
        self._meta_lock = threading.Lock()

    # -- lookup -----------------------------------------------------------------

    def resolve(self, name: str) -> Optional[Entry]:
        """Entry for a canonical key (any case) or an alias (exact case)."""
        return self._by_key.get(name.upper()) or self._aliases.get(name)

    # -- writing ----------------------------------------------------------------

    def set(self, name: str, value: Any, level: str) -> bool:
        """Set ``name`` at ``level``; ``value=None`` clears that level.

        :return: ``False`` when the entry is unknown, the level is not
            allowed for it, or the value does not parse for its type.
        """
        entry = self.resolve(name)
        if entry is None or level == "default" or not entry.allows(level):
            return False
        if value is None:
            self._change(entry, lambda levels: levels.pop(level, None))
            return True
        try:
            parsed = parse(entry.type, value)
        except ValueError as exc:
            log.warning("config_value_invalid", key=entry.key, level=level, error=str(exc))
            return False
        self._change(entry, lambda levels: levels.__setitem__(level, parsed))
        return True

    def _change(self, entry: Entry, edit: Callable[[Dict[str, Any]], Any]) -> None:
        """Apply ``edit`` to ``entry``'s levels; report a new effective value."""
        with self._lock:
            levels = self._levels[entry.key]
            before = self._winner(levels)
            edit(levels)
            after = self._winner(levels)
        if after != before and self.on_change is not None:
            self.on_change(entry, *after)

    @staticmethod
    def _winner(levels: Dict[str, Any]) -> Tuple[Any, str]:
        level = max(levels, key=RANK.__getitem__)
        return levels[level], level

    def load_pairs(self, pairs: Iterable[Tuple[str, str]], level: str, source: str) -> None:
        """Apply ``KEY=VALUE`` pairs (a config file, the environment) at ``level``."""
        for name, value in pairs:
            if self.resolve(name) is None:
                log.warning("config_key_unknown", key=name, source=source)
            elif not self.set(name, value, level):
                log.warning("config_value_rejected", key=name, source=source)

    # -- the metadata level ---------------------------------------------------------

    def meta_changed(self, name: str, value: Optional[str]) -> None:
        """A user-meta key changed (``value=None``: deleted)."""
        with self._meta_lock:
            if value is None:
                self._meta.pop(name, None)
            else:
                self._meta[name] = value
            entry = self._runtime_entry(name)
            if entry is None:
                return
            if value is not None:
                self._apply_meta(name, value)
                return
            # Another key may still name the same entry (``log.level`` and
            # ``PV_LOG_LEVEL``): fall back to it, else to the pre-metadata value.
            self._change(entry, lambda levels: levels.pop("metadata", None))
            for other, other_value in self._meta.items():
                if self._runtime_entry(other) is entry:
                    self._apply_meta(other, other_value)

    def _runtime_entry(self, name: str) -> Optional[Entry]:
        entry = self.resolve(name)
        return entry if entry is not None and entry.allows("metadata") else None

    def _apply_meta(self, name: str, value: str) -> None:
        if self._runtime_entry(name) is not None and self.set(name, value, "metadata"):
            log.info("config_overridden", key=self.resolve(name).key, level="metadata", source=name)

    # -- reading ------------------------------------------------------------------

    def effective(self, entry: Entry) -> Tuple[Any, str]:
        """``(value, level)`` of the highest level set for ``entry``."""
        with self._lock:
            return self._winner(self._levels[entry.key])

    def rows(self) -> List[Tuple[Entry, Any, str]]:
        """``(entry, value, level)`` for every entry, in table order."""
        return [(entry, *self.effective(entry)) for entry in self.entries]
