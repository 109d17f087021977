"""Artifact checksums: re-hash a revision's objects before it runs (docs/protocol.md §D12.5).

Each object is read in fixed-size blocks into one reused buffer and hashed
as it goes (``hashlib.file_digest``), so verifying a revision of any size
costs a buffer, not its objects. An object shared by several keys is hashed
once.
"""
from __future__ import annotations

import hashlib
from typing import Callable, List, Mapping, Optional, Tuple

import structlog

log = structlog.get_logger(__name__)


def file_sha256(path: str) -> Optional[str]:
    """The sha256 of the file at ``path``, streamed; ``None`` when it cannot be read."""
    try:
        with open(path, "rb", buffering=0) as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def corrupt_objects(objects: Mapping[str, str], object_path: Callable[[str], Optional[str]]) -> List[Tuple[str, str]]:
    """The ``(key, sha)`` pairs of ``objects`` whose stored bytes do not hash to their sha.

    :param objects: state key → sha256, as the revision names them.
    :param object_path: where the object store keeps ``sha`` (``None``: not stored).
    """
    verdicts = {}
    bad = []
    for key, sha in objects.items():
        if sha not in verdicts:
            path = object_path(sha)
            verdicts[sha] = path is not None and file_sha256(path) == sha
        if not verdicts[sha]:
            bad.append((key, sha))
    return bad

