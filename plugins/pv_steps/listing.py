"""The ``GET /steps`` body, hand-formatted as upstream does (docs/protocol.md §7.9)."""
from __future__ import annotations

import json
import os
import time
from typing import List

from pv_steps.trails import Trails

#: A progress file larger than this is shown as ``{}`` (upstream: 512; ours
#: allows for the 4 KiB ``logs`` field of a failed revision).
PROGRESS_MAX = 16384
COMMITMSG_MAX = 512


def _read(path: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError:
        return b""
    return b"" if len(data) > limit else data


def _progress(path: str) -> str:
    data = _read(path, PROGRESS_MAX)
    try:
        doc = json.loads(data)
    except ValueError:
        return "{}"
    # NOTE: upstream embeds the raw file; re-serialising keeps one corrupt
    # file from making the whole listing invalid JSON.
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False) if isinstance(doc, dict) else "{}"


def entry(trails: Trails, rev: str) -> str:
    path = os.path.join(trails.root, rev)
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        mtime = 0
    # The date is UTC (upstream formats local time with a literal "Z").
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))
    message = _read(os.path.join(path, ".pv", "commitmsg"), COMMITMSG_MAX).decode("utf-8", "replace")
    held = trails.unsaved_progress(rev)  # what the disk refused is shown as it will be written
    progress = _progress(os.path.join(path, ".pv", "progress")) if held is None else \
        json.dumps(held, separators=(",", ":"), ensure_ascii=False)
    # Names and messages are JSON-escaped (upstream leaves names raw).
    return '{"name":%s, "date":"%s", "commitmsg":%s, "progress":%s}' % (
        json.dumps(rev, ensure_ascii=False), date, json.dumps(message, ensure_ascii=False), progress)


def render(trails: Trails) -> bytes:
    """The whole array; ``[]`` when there is no revision (or no ``trails/``)."""
    parts: List[str] = [entry(trails, rev) for rev in trails.names()]
    return ("[" + ",".join(parts) + "]").encode("utf-8")
