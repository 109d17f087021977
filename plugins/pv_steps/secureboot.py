"""Where pv_steps asks the trust contract (pv_secureboot, docs/protocol.md §D12.1).

pv_steps owns revisions, so it decides *when* a revision is checked: at
``PUT /steps/locals/{name}`` (:mod:`pv_steps.resources`), before a transition
runs one (:mod:`pv_steps.transition`) and for the running revision at
start-up (:func:`boot_check`). Whether it may run is pv_secureboot's answer;
without that plugin nothing is refused.
"""
from __future__ import annotations

import json
import os
from typing import Any, List, Optional

import structlog

log = structlog.get_logger(__name__)

#: upstream's ERROR message for objects that do not match their sha256
BAD_CHECKSUM = "Object validation went wrong"


def verify_state(core, path: Optional[str]) -> Optional[str]:
    """``None`` when the state JSON at ``path`` may run, else upstream's result text
    (no path: nothing to check, the caller's "not found" applies)."""
    if path is None:
        return None
    return core.call("pv_secureboot_verify_state", default=None, path=path)


def corrupt_objects(core, revision: Any) -> List[str]:
    """Keys of ``revision``'s objects whose bytes no longer hash to their sha256."""
    objects = dict(revision.objects)
    return list(core.call("pv_secureboot_corrupt_objects", default=[], objects=objects)) if objects else []


def _demo_seed(core, rev: str, path: str) -> bool:
    """Whether ``path`` is the demo device's seeded factory revision, byte for byte
    (only with ``PVCORE_DEMO=1``): a demo-only exemption (docs/protocol.md §12)."""
    if not core.settings.demo or rev != "0":
        return False
    try:
        from pvcore_demo import demo_state
    except ImportError:  # a device: the demo (contrib/pvcore-demo) is not installed
        return False

    seeded = json.dumps(demo_state()[0], separators=(",", ":")).encode()
    try:
        if os.path.getsize(path) != len(seeded):
            return False
        with open(path, "rb") as fh:
            return fh.read() == seeded
    except OSError:
        return False


def refusal(core, steps, rev: str) -> Optional[str]:
    """Why the running revision ``rev`` may not run at start-up, or ``None``."""
    path = steps.trails.state_path(rev)
    if path is None:
        return None
    if not _demo_seed(core, rev, path):
        result = verify_state(core, path)
        if result is not None:
            return result
    revision = steps.revisions.get(rev)
    if revision is not None:
        bad = corrupt_objects(core, revision)
        if bad:
            log.error("boot_objects_corrupt", rev=rev, keys=bad[:5])
            return BAD_CHECKSUM
    return None


def boot_check(core, steps) -> Optional[str]:
    """Check the running revision before anything of it runs; the revision to run.

    A tried revision that fails is marked ERROR with the reason and the device
    falls back to its rollback point, which is checked in turn (upstream
    reports ERROR and rolls back). A committed revision that fails runs
    nothing: ``None`` (upstream would reboot into it again).
    """
    rev = steps.trails.running()
    while rev is not None:
        reason = refusal(core, steps, rev)
        if reason is None:
            return rev
        log.error("boot_revision_refused", rev=rev, reason=reason)
        back = steps.refuse_boot(rev, reason)
        if back is None or back == rev:
            return None
        rev = back
    return None
