"""The top-level members of a stored state JSON, as raw text (docs/protocol.md §D12.2).

A pvs@2 signature covers the covered keys' values *as they are written in the
stored file*, so nothing here decodes and re-encodes: :func:`members` yields
each top-level member's key (the text between its quotes, escapes as written)
and the byte span of its value, in file order. Nested values are skipped with
a bracket count, never built into Python objects, so a 16 MiB state costs the
spans, not its parse.
"""
from __future__ import annotations

import re
from typing import Iterator, List, NamedTuple

_WS = re.compile(rb"[ \t\n\r]*")
_STRING = re.compile(rb'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"')
_PRIMITIVE = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null")
# Everything up to the next quote or bracket: what a nested value skips in one step.
_PLAIN = re.compile(rb'[^"{}\[\]]*')
_CLOSE = {ord("{"): ord("}"), ord("["): ord("]")}

STRING, OBJECT, ARRAY, PRIMITIVE = "string", "object", "array", "primitive"


class MalformedState(ValueError):
    """The text is not one JSON object (pv_steps refuses such states at PUT)."""


class Member(NamedTuple):
    """One top-level member: ``key`` is the raw text between the key's quotes;
    ``start``/``end`` delimit the raw value (quotes included for a string)."""

    key: str
    start: int
    end: int
    kind: str


def _skip_ws(buf, pos: int) -> int:
    return _WS.match(buf, pos).end()


def _string_end(buf, pos: int) -> int:
    match = _STRING.match(buf, pos)
    if match is None:
        raise MalformedState(f"bad string at {pos}")
    return match.end()


def _nested_end(buf, pos: int) -> int:
    """End of the object or array opening at ``pos`` (brackets matched, strings skipped)."""
    stack: List[int] = []
    size = len(buf)
    while True:
        char = buf[pos]
        if char == 0x22:  # "
            pos = _string_end(buf, pos)
        elif char in _CLOSE:
            stack.append(_CLOSE[char])
            pos += 1
        else:  # a closing bracket
            if not stack or stack.pop() != char:
                raise MalformedState(f"unbalanced bracket at {pos}")
            pos += 1
            if not stack:
                return pos
        pos = _PLAIN.match(buf, pos).end()
        if pos >= size:
            raise MalformedState("unterminated value")


def _value_end(buf, pos: int):
    char = buf[pos:pos + 1]
    if char == b'"':
        return _string_end(buf, pos), STRING
    if char == b"{":
        return _nested_end(buf, pos), OBJECT
    if char == b"[":
        return _nested_end(buf, pos), ARRAY
    match = _PRIMITIVE.match(buf, pos)
    if match is None or match.end() == pos:
        raise MalformedState(f"bad value at {pos}")
    return match.end(), PRIMITIVE


def members(buf) -> Iterator[Member]:
    """Each top-level member of the JSON object in ``buf`` (bytes or mmap), in file order.

    :raises MalformedState: ``buf`` is not one JSON object.
    """
    pos = _skip_ws(buf, 0)
    if buf[pos:pos + 1] != b"{":
        raise MalformedState("not an object")
    pos = _skip_ws(buf, pos + 1)
    if buf[pos:pos + 1] == b"}":
        pos += 1
    else:
        while True:
            if buf[pos:pos + 1] != b'"':
                raise MalformedState(f"expected a key at {pos}")
            key_end = _string_end(buf, pos)
            key = bytes(buf[pos + 1:key_end - 1]).decode("utf-8", "surrogateescape")
            pos = _skip_ws(buf, key_end)
            if buf[pos:pos + 1] != b":":
                raise MalformedState(f"expected ':' at {pos}")
            start = _skip_ws(buf, pos + 1)
            end, kind = _value_end(buf, start)
            yield Member(key, start, end, kind)
            pos = _skip_ws(buf, end)
            sep = buf[pos:pos + 1]
            if sep == b"}":
                pos += 1
                break
            if sep != b",":
                raise MalformedState(f"expected ',' or '}}' at {pos}")
            pos = _skip_ws(buf, pos + 1)
    if _skip_ws(buf, pos) != len(buf):
        raise MalformedState("trailing data")
