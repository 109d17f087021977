"""Revision names: what may name a trail, and never anything outside ``trails/``.

Remote revisions are one path component (``0``, ``12``); local ones are
``locals/<name>`` (docs/protocol.md §7.9, docs/protocol.md §D1.5). ``current`` is the
running revision, through the ``trails/current`` symlink.
"""
from __future__ import annotations

from typing import Optional

#: Longest local name after ``locals/`` (64 is accepted, 65 is not).
LOCAL_NAME_MAX = 64
#: Longest remote revision name (upstream's are decimal counters).
REMOTE_NAME_MAX = 255
LOCALS = "locals"
CURRENT = "current"
_RESERVED = (".", "..", LOCALS, CURRENT)


def valid_component(name: str, limit: int) -> bool:
    """One safe path component: 1..limit chars, no ``/``, no control chars, not ``.``/``..``.

    Names ending in ``.tmp`` are reserved for the plugin's own staging entries.
    """
    if not name or len(name) > limit or name in (".", ".."):
        return False
    if name.endswith(".tmp"):
        return False
    return not any(ch == "/" or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name)


def valid_local_name(name: str) -> bool:
    """The part after ``locals/`` of a local revision a client may create."""
    return valid_component(name, LOCAL_NAME_MAX)


def normalize(rev: Optional[str], allow_current: bool = True) -> Optional[str]:
    """``rev`` if it names a possible revision (``5``, ``locals/x``, ``current``), else ``None``."""
    if not isinstance(rev, str):
        return None
    if rev.startswith(LOCALS + "/"):
        return rev if valid_local_name(rev[len(LOCALS) + 1:]) else None
    if rev == CURRENT:
        return rev if allow_current else None
    if rev in _RESERVED or not valid_component(rev, REMOTE_NAME_MAX):
        return None
    return rev
