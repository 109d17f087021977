"""One update (a revision transition, :mod:`pv_steps.transition`): its record, its progress
messages in upstream's words (docs/protocol.md §D3.1) and the ``logs`` lines that say what failed."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, FrozenSet, Optional

STATE_NOT_FOUND = "State JSON not found"
NOT_STARTED = "A container could not be started"
OBJECTS_MISSING = "Object validation went wrong"
INTERNAL_ERROR = "Internal error"
TRANSITIONING = "Transitioning to new revision without rebooting"
REBOOTING = "Rebooting"
TRYING = "Trying new revision"
TESTING = "Awaiting to see if update is stable"
TESTING_REBOOT = "Awaiting to set rollback point if update is stable"
STABILITY_WAIT = "Waiting for all containers to become stable"
UPDATED = "Update finished, revision not set as rollback point"
DONE = "Update finished, revision set as rollback point"


def write_failed(exc: OSError) -> str:
    """The progress message of a transition the storage refused: upstream's
    ``Internal error``, naming the cause (docs/protocol.md §12)."""
    return f"{INTERNAL_ERROR}: {exc.strerror or exc}"


def log_line(message: str, detail: str = "") -> str:
    """One line of the progress ``logs``, as upstream's: the message, and
    what failed — the container, the object, the runtime's error."""
    text = f"{message}: {detail}" if detail else message
    return json.dumps({"plat": "pantavisor", "lvl": "ERROR", "src": "updater", "msg": text[:2048]}) + "\n"


def objects_named(revision, shas) -> str:
    """The state keys (and shas) of objects ``shas``, the first few."""
    wanted = set(shas)
    named = [f"{key} ({sha})" for key, sha in revision.objects.items() if sha in wanted]
    more = len(named) - 5
    return ", ".join(named[:5]) + (f" and {more} more" if more > 0 else "")


@dataclass
class Update:
    """A revision transition from ``old`` to ``rev``.

    :ivar old_revision: the previous revision's model, to roll back to.
    :ivar containers: names of ``rev``'s containers, as its model names them
        (one name each: the folder, which run.json's ``name`` must equal).
    :ivar reboot: a reboot transition (ends DONE, committed); else non-reboot (UPDATED).
    :ivar commit_at: monotonic time at which TESTING may end; ``None`` while the
        containers are still being brought up.
    :ivar failure: why the revision failed while TESTING; ended at once.
    """

    op: str
    rev: str
    old: Optional[str]
    old_revision: Any = None
    containers: FrozenSet[str] = frozenset()
    reboot: bool = False
    commit_at: Optional[float] = None
    failure: Optional[str] = None
    #: which container or object failed it, and why, for the progress ``logs``
    failure_detail: str = ""
    #: the containers are up: from now on one dying fails the revision
    testing: bool = False
    #: "Waiting for all containers to become stable" was written
    stability_noted: bool = False
    #: ``rev`` was made the running revision (boot record and ``current``):
    #: a failure before that has nothing to roll back
    switched: bool = False
