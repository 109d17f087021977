"""The object store contract, owned by pv_objects (docs/architecture.md §3).

pv_objects holds the content-addressed objects under ``<storage>/objects``.
Other plugins find objects and have unreferenced ones collected through these
hooks; only pv_objects writes or deletes an object file.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO, Collection, Iterable, Optional, Sequence

import pluggy

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from pvcore.app import Core

hookspec = pluggy.HookspecMarker("pvcore")


@hookspec(firstresult=True)
def pv_objects_object_path(core: "Core", sha: str) -> Optional[str]:
    """Filesystem path of the complete object ``sha``. *firstresult*

    :param sha: a lowercase sha256 hex digest; anything else is never found.
    :return: the path, or ``None`` when the object is not stored (an upload
        still in flight does not count).
    """


@hookspec(firstresult=True)
def pv_objects_missing(core: "Core", shas: Iterable[str]) -> Optional[Sequence[str]]:
    """The shas of ``shas`` that are not stored, in the order given. *firstresult*

    One call checks every object a revision references before it may run
    (docs/protocol.md §D3.2: ``Object validation went wrong``).
    """


@hookspec(firstresult=True)
def pv_objects_collect(core: "Core", keep: Collection[str]) -> Optional[int]:
    """Delete every stored object whose sha is not in ``keep``. *firstresult*

    :param keep: the shas still referenced; the caller (the owner of the
        revisions) computes it, so the store never guesses what is in use.
    :return: the bytes reclaimed.

    Objects (and upload temp files) younger than the ``storage_gc_grace``
    setting are kept too, so a revision being uploaded object by object is
    not collected before its state JSON arrives.
    """


@hookspec(firstresult=True)
def pv_objects_store(core: "Core", sha: str, stream: BinaryIO, length: Optional[int]) -> Optional[bool]:
    """Store the bytes read from ``stream`` as object ``sha``, as ``PUT /objects/{sha}``
    does: checked by sha256 while they stream, then fsync and rename. *firstresult*

    How code that runs beside the server (the demo device's factory image)
    puts an object without writing into ``<storage>/objects`` itself.

    :param length: the number of bytes, if known (checked against free space first).
    :return: ``True`` when stored, ``False`` when the object was already there.
    :raises ValueError: ``sha`` is not a lowercase sha256 hex digest.
    :raises pvcore.errors.Unprocessable: the bytes do not hash to ``sha``.
    :raises pvcore.errors.InsufficientStorage: not enough space; nothing is left behind.
    """
