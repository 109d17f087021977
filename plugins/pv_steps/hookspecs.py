"""The revision store contract, owned by pv_steps (docs/architecture.md §3).

pv_steps holds the revisions ("steps") under ``<storage>/trails``: their
state JSON, progress, commit messages and the boot record (which revision
runs, which is committed, which is being tried). Only pv_steps writes them:
it carries out the revision transitions itself (``pv_commands_run``). Others
read through these hooks; pv_steps publishes ``revision.running`` when the
running revision changes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

import pluggy

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from pvcore.app import Core

hookspec = pluggy.HookspecMarker("pvcore")


@hookspec(firstresult=True)
def pv_steps_running_revision(core: "Core") -> Optional[str]:
    """Name of the running revision (``"0"``, ``"locals/x"``). *firstresult*"""


@hookspec(firstresult=True)
def pv_steps_revision_state(core: "Core", rev: str) -> Optional[Mapping[str, Any]]:
    """The parsed state JSON of revision ``rev``. *firstresult*

    :param rev: a revision name; ``"current"`` means the running one.
    :return: the state as a dict, or ``None`` when the revision does not exist
        or its JSON cannot be parsed.
    """
