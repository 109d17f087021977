"""The trust contract, owned by pv_secureboot (docs/architecture.md §3).

pv_secureboot decides whether a revision may run: its state JSON's pvs@2
signatures under the device's secure boot mode, and its objects' checksums.
It owns no device state; it reads the truststores and the on-disk public key
under ``<PV_SYSTEM_ETCDIR>/pantavisor/pvs/trust/`` and its settings through
pv_config (``PV_SECUREBOOT_*``, ``PV_OEM_NAME``, ``PV_SYSTEM_ETCDIR``).
The owner of revisions asks before a revision is installed and before one
runs (docs/protocol.md §D12.1). While pv_secureboot is not loaded nothing is
checked: callers pass ``default=None`` / ``default=[]``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Mapping, Optional

import pluggy

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from pvcore.app import Core

hookspec = pluggy.HookspecMarker("pvcore")


@hookspec(firstresult=True)
def pv_secureboot_verify_state(core: "Core", path: str) -> Optional[str]:
    """Check the signatures of the state JSON stored at ``path``. *firstresult*

    The file is read as stored (the payload a signature covers is the covered
    keys' raw text); it is never held whole in memory.

    :return: ``None`` when the state may run under ``PV_SECUREBOOT_MODE``,
        else upstream's result text: ``"Signature validation failed"``,
        ``"State not fully covered by signatures"`` or ``"Internal error"``.
    """


@hookspec(firstresult=True)
def pv_secureboot_corrupt_objects(core: "Core", objects: Mapping[str, str]) -> Optional[List[str]]:
    """Re-hash a revision's objects before it runs. *firstresult*

    :param objects: state key → sha256, the objects the revision references.
    :return: the keys whose stored object is missing or does not hash to its
        sha (each object is streamed, shared ones hashed once); ``[]`` when
        all match or ``PV_SECUREBOOT_CHECKSUM`` is off.
    """
