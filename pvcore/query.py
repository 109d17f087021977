"""Numeric query parameters, validated the one way docs/protocol.md §1 states.

A number in a query string is ASCII digits only: ``str.isdigit`` also takes
``²`` or ``٣``, which ``int()`` then refuses (a 500). Anything else — a
sign, a repeated parameter, more digits than ``maximum`` allows — is the
caller's mistake: 400 with a JSON error.
"""
from __future__ import annotations

from typing import Optional

from pvcore.errors import BadRequest


def int_param(req, name: str, maximum: int, message: Optional[str] = None) -> Optional[int]:
    """Query parameter ``name`` as an int in ``0..maximum``, or ``None`` when absent.

    :raises BadRequest: ``message`` (default ``Invalid <name>``) for anything
        that is not one run of ASCII digits within range.
    """
    value = req.params.get(name)
    if value is None:
        return None
    # NOTE: bound the length before int(): a million digits is slow to convert.
    if (not isinstance(value, str) or not value or len(value) > len(str(maximum))
            or not (value.isascii() and value.isdigit()) or int(value) > maximum):
        raise BadRequest(message or f"Invalid {name}")
    return int(value)
