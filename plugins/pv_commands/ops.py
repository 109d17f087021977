"""The command vocabulary and the parsing of a ``POST /commands`` body (docs/protocol.md §7.6)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Optional

from pvcore.body import parse_json_object
from pvcore.errors import BadRequest

BAD_FORMAT = "Command has bad format"

UPDATE_METADATA = "UPDATE_METADATA"
REBOOT_DEVICE = "REBOOT_DEVICE"
POWEROFF_DEVICE = "POWEROFF_DEVICE"
TRY_ONCE = "TRY_ONCE"
LOCAL_RUN = "LOCAL_RUN"
MAKE_FACTORY = "MAKE_FACTORY"
RUN_GC = "RUN_GC"
ENABLE_SSH = "ENABLE_SSH"
DISABLE_SSH = "DISABLE_SSH"
GO_REMOTE = "GO_REMOTE"
DEFER_REBOOT = "DEFER_REBOOT"
LOCAL_RUN_COMMIT = "LOCAL_RUN_COMMIT"
LOCAL_APPLY = "LOCAL_APPLY"
XCONNECT_GRAPH = "XCONNECT_GRAPH"
UNCLAIM = "UNCLAIM"

#: Every op, in upstream's order. Matching is exact (upstream matches prefixes, docs/protocol.md §12.8).
OPS = (
    UPDATE_METADATA, REBOOT_DEVICE, POWEROFF_DEVICE, TRY_ONCE, LOCAL_RUN, MAKE_FACTORY, RUN_GC,
    ENABLE_SSH, DISABLE_SSH, GO_REMOTE, DEFER_REBOOT, LOCAL_RUN_COMMIT, LOCAL_APPLY, XCONNECT_GRAPH,
    UNCLAIM,
)

#: Ops that switch the running revision (docs/protocol.md §D3.2, §D3.3).
TRANSITIONS = (LOCAL_RUN, LOCAL_RUN_COMMIT, TRY_ONCE, LOCAL_APPLY, MAKE_FACTORY)

#: Ops refused with 503 + ``Retry-After: 600`` while a transition runs.
BLOCKED_BY_UPDATE = (
    REBOOT_DEVICE, POWEROFF_DEVICE, LOCAL_RUN, LOCAL_RUN_COMMIT, TRY_ONCE, LOCAL_APPLY, MAKE_FACTORY, UNCLAIM,
)

#: Transition ops whose payload must name a revision (MAKE_FACTORY's may be empty).
NEEDS_REVISION = (LOCAL_RUN, LOCAL_RUN_COMMIT, TRY_ONCE, LOCAL_APPLY)


@dataclass(frozen=True)
class Command:
    """One accepted command.

    :ivar op: one of :data:`OPS`.
    :ivar payload: the payload string as sent (UPDATE_METADATA: the JSON text
        of the object).
    :ivar meta: UPDATE_METADATA only: the parsed payload object.
    """

    op: str
    payload: str
    meta: Optional[Dict[str, Any]] = None

    @property
    def revision(self) -> Optional[str]:
        """The revision a transition op names (``None`` for other ops)."""
        return self.payload if self.op in TRANSITIONS else None


def _metadata_payload(payload: Any) -> Dict[str, Any]:
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            raise BadRequest(BAD_FORMAT) from None
    if not isinstance(payload, dict) or not payload:
        raise BadRequest(BAD_FORMAT)
    key = next(iter(payload))
    if not key:
        raise BadRequest(BAD_FORMAT)
    return payload


def _defer_payload(payload: str) -> None:
    try:
        seconds = int(payload)
    except ValueError:
        raise BadRequest(BAD_FORMAT) from None
    if seconds <= 0:
        raise BadRequest(BAD_FORMAT)


def parse_command(data: bytes) -> Command:
    """Parse and validate a command body.

    :raises BadRequest: ``Command has bad format`` for malformed JSON, a
        missing or non-string ``op``/``payload``, an unknown op, a transition
        without a revision, a DEFER_REBOOT without a positive number of
        seconds, or an UPDATE_METADATA payload that is not a non-empty object
        (or a string holding one).
    """
    doc = parse_json_object(data, BAD_FORMAT)
    op = doc.get("op")
    if not isinstance(op, str) or op not in OPS or "payload" not in doc:
        raise BadRequest(BAD_FORMAT)
    payload = doc["payload"]
    if op == UPDATE_METADATA:
        meta = _metadata_payload(payload)
        text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        return Command(op, text, meta)
    if not isinstance(payload, str):
        raise BadRequest(BAD_FORMAT)
    if op in NEEDS_REVISION and not payload:
        raise BadRequest(BAD_FORMAT)
    if op == DEFER_REBOOT:
        _defer_payload(payload)
    return Command(op, payload)
