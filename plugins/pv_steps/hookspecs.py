"""The revision store contract, owned by pv_steps (docs/architecture.md §3).

pv_steps holds the revisions ("steps") under ``<storage>/trails``: their
state JSON, progress, commit messages and the boot record (which revision
runs, which is committed, which is being tried). Only pv_steps writes them.
It publishes ``revision.running`` when the running revision changes and
``revision.progress`` when a progress is written.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

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


@hookspec(firstresult=True)
def pv_steps_revision_objects(core: "Core", rev: str) -> Optional[Sequence[str]]:
    """The object shas revision ``rev`` references. *firstresult*

    :return: a list of sha256 strings, or ``None`` for an unknown revision.
    """


@hookspec
def pv_steps_revisions_in_use(core: "Core") -> Iterable[str]:
    """Revisions garbage collection must keep besides the boot record's.

    :return: revision names (an update in flight, one waiting to start);
        every plugin's answers are honoured.
    """


@hookspec(firstresult=True)
def pv_steps_set_progress(
    core: "Core", rev: str, status: str, message: str, logs: Optional[str] = None
) -> Optional[bool]:
    """Write revision ``rev``'s progress JSON (docs/protocol.md §6.2). *firstresult*

    :param status: ``NEW``, ``INPROGRESS``, ``TESTING``, ``UPDATED``, ``DONE``,
        ``WONTGO``, ``ERROR`` …; the percentage is derived from it.
    :param logs: optional text kept in ``.pv/logs`` and shown as ``logs``.
    :return: ``True`` once written, ``None`` if the revision does not exist.
    """


@hookspec(firstresult=True)
def pv_steps_set_running_revision(core: "Core", rev: str, try_once: bool = False) -> Optional[bool]:
    """Make ``rev`` the running revision, uncommitted. *firstresult*

    Points ``trails/current`` at ``rev`` and records it as being tried
    (``pv_try``). With ``try_once`` the next boot goes back to the last
    committed revision instead of trying ``rev`` again.
    """


@hookspec(firstresult=True)
def pv_steps_commit_revision(core: "Core", rev: str) -> Optional[bool]:
    """Commit ``rev``: it becomes the rollback point (``pv_rev``, ``.pv/done``). *firstresult*"""


@hookspec(firstresult=True)
def pv_steps_make_factory(core: "Core", rev: str) -> Optional[bool]:
    """Replace revision ``0`` with a copy of ``rev``'s state JSON. *firstresult*"""
