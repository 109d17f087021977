"""The boot record: which revision is committed and which is being tried.

Upstream keeps ``pv_rev``/``pv_try`` in the bootloader environment
(docs/protocol.md §D1.4); pvcore keeps them in ``<storage>/boot/pv.json``, written
atomically: ``{"pv_rev": "0", "pv_try": null, "try_once": false}``.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Optional

import structlog

from pvcore.fsutil import atomic_write

log = structlog.get_logger(__name__)


@dataclass
class BootState:
    """``pv_rev``: last committed revision; ``pv_try``: revision being tried, if any;
    ``try_once``: the next start goes back to ``pv_rev`` instead of trying again."""

    pv_rev: str = "0"
    pv_try: Optional[str] = None
    try_once: bool = False


class BootRecord:
    """Load and save :class:`BootState` at ``path``."""

    def __init__(self, path: str):
        self.path = path

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def load(self) -> BootState:
        try:
            with open(self.path, "rb") as fh:
                doc = json.loads(fh.read())
            state = BootState(
                pv_rev=str(doc.get("pv_rev") or "0"),
                pv_try=doc.get("pv_try") if isinstance(doc.get("pv_try"), str) else None,
                try_once=bool(doc.get("try_once", False)),
            )
        except FileNotFoundError:
            return BootState()
        except (OSError, ValueError, AttributeError):
            log.warning("boot_record_unreadable", path=self.path)
            return BootState()
        return state

    def save(self, state: BootState) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        atomic_write(self.path, json.dumps(asdict(state), separators=(",", ":")))
