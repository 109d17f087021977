"""Reading a stored state JSON in bounded memory (docs/protocol.md §7.9, §D2.4).

A state JSON may be 16 MiB of small objects; as Python objects that is
hundreds of MiB. :func:`scan_state` reads a state file and returns only what
pvcore needs from it: the values the validator looks at (``#spec``,
``*/run.json``, ``device.json``, ...) and the objects it references
(top-level values that are a sha256). Other values are checked strictly and
dropped.

Small files (up to :data:`SMALL`) go through :func:`json.loads`, which is
fast and whose expansion is bounded by the size. Larger ones are scanned
token by token over an ``mmap`` of the file (pages dropped from RSS as the
scan passes them), with an explicit stack instead of recursion. Both accept
and refuse the same documents (strict JSON: UTF-8, no duplicate keys at any
depth, no ``NaN``/``Infinity``, an object at the top, pvcore's limits on
nesting and keys); ``tests/plugins/pv_steps/test_steps_scan.py`` checks that
they agree on arbitrary bytes.

Parses are serialised by one lock, so concurrent large PUTs and a GC
rebuilding indexes cost one parse's memory, not the sum.
"""
from __future__ import annotations

import codecs
import ctypes
import ctypes.util
import json
import mmap
import os
import re
import sys
import threading
from array import array
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

#: Files up to this size are parsed whole by :func:`json.loads` (≤ ~25× in memory).
SMALL = 1 << 20
#: A value the validator reads must fit in this many bytes (it is parsed whole).
NEEDED_MAX = 1 << 20
#: Nesting deeper than this is refused (``json.loads`` refuses at about the
#: interpreter's recursion limit, which is higher than this).
MAX_DEPTH = 500
#: Keys of one object; a bigger object would cost too much to check for
#: duplicates. More than a :data:`SMALL` document can hold, so the small path
#: needs no such check.
MAX_KEYS = 1 << 19

_SHA = re.compile(r"[0-9a-f]{64}\Z")
_PARSE_LOCK = threading.Lock()


class ScannedState(NamedTuple):
    """What pvcore keeps of a state JSON."""

    #: The whole document when the file was small; else only the members
    #: whose value ``needs_value`` asked for and those whose value is a sha256.
    state: Dict[str, Any]
    #: Sorted sha256s the state references (top-level string values).
    objects: List[str]


def _reject_duplicates(pairs):
    result: Dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate key")
        result[key] = value
    return result


def _no_constants(name):
    raise ValueError(name)


def loads_strict(data: bytes) -> Any:
    """Strict :func:`json.loads` of UTF-8 ``data``; raises ``ValueError``."""
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_reject_duplicates,
                          parse_constant=_no_constants)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


def objects_of(state: Dict[str, Any]) -> List[str]:
    """The sha256s among the top-level values."""
    return sorted({v for v in state.values() if isinstance(v, str) and _SHA.match(v)})


def _depth(doc: Any) -> int:
    """How deeply containers nest in ``doc`` (an object of scalars is 1)."""
    deepest = 0
    todo = [(doc, 1)]
    while todo:
        value, level = todo.pop()
        deepest = max(deepest, level)
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, (dict, list)):
                todo.append((child, level + 1))
    return deepest


def scan_state(path: str, needs_value: Callable[[str], bool]) -> Optional[ScannedState]:
    """The state in file ``path``, or ``None`` if it is not a strict JSON object.

    :param needs_value: which top-level keys' values to keep (parsed), for a
        large file; a small one is kept whole.
    :raises OSError: the file cannot be read.
    """
    with _PARSE_LOCK, open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size <= SMALL or not size:
            try:
                state = loads_strict(fh.read())
            except ValueError:
                return None
            if not isinstance(state, dict) or _depth(state) > MAX_DEPTH:
                return None
            return ScannedState(state, objects_of(state))
        try:
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _scan_large(buf, needs_value)
        finally:
            _trim()


def load_state(path: str) -> Optional[Dict[str, Any]]:
    """The whole state in file ``path`` as a dict (for the engine), or ``None``; serialised like scans."""
    with _PARSE_LOCK:
        try:
            with open(path, "rb") as fh:
                state = json.loads(fh.read())
        except (OSError, ValueError, RecursionError):
            return None
    return state if isinstance(state, dict) else None


def _malloc_trim() -> Callable[[], Any]:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to hand back
        return lambda pad: 0


_MALLOC_TRIM = _malloc_trim()


def _trim() -> None:
    """Hand the heap pages a large scan freed back to the system.

    NOTE: glibc keeps freed memory in its arenas (one per thread that
    allocated, and above its adaptive mmap threshold even big blocks), so
    without this each large PUT on another thread would leave tens of MiB
    behind and concurrent PUTs would add up.
    """
    _MALLOC_TRIM(0)


# -- the large-file scanner ----------------------------------------------------

_INT_DIGITS = getattr(sys, "get_int_max_str_digits", lambda: 0)()
_WS = rb"[ \t\n\r]*"
_CHARS = rb'[^"\\\x00-\x1f]*'
_ESC = rb'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})'
# NOTE: repeats of a group cost the regex engine memory per iteration, so
# they are bounded; a string with more escapes continues in _string_end.
_STRING = rb'"' + _CHARS + rb"(?:" + _ESC + _CHARS + rb'){0,256}"'
_FRACTION = rb"(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
_NUMBER = rb"-?(?:0|[1-9][0-9]*)" + _FRACTION
# json.loads makes an integer with int(), which refuses more digits than
# sys.get_int_max_str_digits(): the fast paths only take numbers it accepts,
# the others go through _check_number.
_SHORT_NUMBER = (rb"-?(?:0|[1-9][0-9]{0,%d})" % (_INT_DIGITS - 1) + _FRACTION) if _INT_DIGITS else _NUMBER
# A value needing no frame: a scalar or an empty container.
_SIMPLE = (rb"(?:" + _STRING + rb"|" + _SHORT_NUMBER + rb"|true|false|null|\{" + _WS + rb"\}|\[" + _WS
           + rb"\])")

WS = re.compile(_WS)
STRING = re.compile(_STRING)
STRING_PART = re.compile(_CHARS + rb"(?:" + _ESC + _CHARS + rb"){0,256}")
NUMBER = re.compile(_NUMBER)
LITERAL = re.compile(rb"true|false|null")
KEY = re.compile(_WS + rb"(" + _STRING + rb")" + _WS + rb":" + _WS)
# One member whose value is simple, up to the next "," or "}": most of a
# state's objects are made of these.
MEMBER = re.compile(_WS + rb"(" + _STRING + rb")" + _WS + rb":" + _WS + rb"(" + _SIMPLE + rb")" + _WS + rb"([,}])")
# Up to 256 simple elements of an array, each followed by a comma.
ELEMENTS = re.compile(rb"(?:" + _WS + _SIMPLE + _WS + rb",){1,256}")
ELEMENT = re.compile(_WS + _SIMPLE + _WS + rb"([,\]])")
#: Pages already scanned are dropped from the worker's RSS every this many bytes.
_RELEASE = 4 << 20
_CHUNK = 1 << 20


class _Invalid(Exception):
    pass


def _string_end(buf, pos: int) -> int:
    """End of the string token at ``pos`` (at a ``"``), past the closing quote."""
    match = STRING.match(buf, pos)
    if match:
        return match.end()
    pos += 1
    while True:
        end = STRING_PART.match(buf, pos).end()
        if buf[end:end + 1] == b'"':
            return end + 1
        if end == pos or buf[end:end + 1] != b"\\":
            raise _Invalid("bad string")
        pos = end


def _key(token: bytes) -> bytes:
    """A key's identity: its UTF-8 bytes once escapes are decoded."""
    if b"\\" not in token:
        return token[1:-1]
    return json.loads(token).encode("utf-8", "surrogatepass")


def _add_key(keys: set, token: bytes) -> bytes:
    key = _key(token)
    if key in keys:
        raise _Invalid("duplicate key")
    if len(keys) >= MAX_KEYS:
        raise _Invalid("too many keys")
    keys.add(key)
    return key


def _check_number(token: bytes) -> None:
    if _INT_DIGITS and len(token.lstrip(b"-")) > _INT_DIGITS and not any(c in token for c in b".eE"):
        raise _Invalid("integer too long")


def _scan_large(buf, needs_value: Callable[[str], bool]) -> Optional[ScannedState]:
    try:
        _utf8(buf)
        state = _Scanner(buf, needs_value).run()
    except (_Invalid, ValueError, RecursionError):
        return None
    return ScannedState(state, objects_of(state))


def _utf8(buf) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    size = len(buf)
    for start in range(0, size, _CHUNK):
        decoder.decode(buf[start:start + _CHUNK], start + _CHUNK >= size)
        _release(buf, start, start + _CHUNK)


def _release(buf, start: int, end: int) -> None:
    """Drop the mapped pages of ``[start, end)`` from RSS (they stay in the page cache)."""
    start -= start % mmap.PAGESIZE
    end -= end % mmap.PAGESIZE
    if end > start and hasattr(buf, "madvise"):
        buf.madvise(mmap.MADV_DONTNEED, start, end - start)


class _KeyTable:
    """The keys of the top-level object, for the duplicate check, in two flat arrays.

    PERF: a set of hundreds of thousands of key objects costs tens of MiB of
    small blocks that the allocator keeps after they are freed; here a key
    costs 16 bytes (its hash and its offset in the file, to compare on a
    hash match), in two blocks handed back whole.
    """

    def __init__(self, buf):
        self.buf = buf
        self.count = 0
        self._alloc(1 << 12)

    def _alloc(self, capacity: int) -> None:
        self.mask = capacity - 1
        self.hashes = array("q", bytes(8 * capacity))
        self.offsets = array("q", bytes(8 * capacity))  # token start + 1; 0 is empty

    def _token(self, offset: int) -> bytes:
        return self.buf[offset:_string_end(self.buf, offset)]

    def add(self, token: bytes, offset: int) -> None:
        """Record the key ``token`` found at ``offset``; raises on a duplicate or too many keys."""
        if self.count >= MAX_KEYS:
            raise _Invalid("too many keys")
        key = _key(token)
        digest = hash(key)
        hashes, offsets, mask = self.hashes, self.offsets, self.mask
        slot = digest & mask
        while offsets[slot]:
            if hashes[slot] == digest and _key(self._token(offsets[slot] - 1)) == key:
                raise _Invalid("duplicate key")
            slot = (slot + 1) & mask
        hashes[slot] = digest
        offsets[slot] = offset + 1
        self.count += 1
        if self.count * 2 > mask and self.count < MAX_KEYS:  # at most half full, but no bigger than needed
            self._grow()

    def _grow(self) -> None:
        hashes, offsets = self.hashes, self.offsets
        self._alloc((self.mask + 1) * 4)
        mask = self.mask
        for digest, offset in zip(hashes, offsets):
            if offset:
                slot = digest & mask
                while self.offsets[slot]:
                    slot = (slot + 1) & mask
                self.hashes[slot] = digest
                self.offsets[slot] = offset


class _Scanner:
    """One pass over the document: checks it, keeps the values asked for and the object references."""

    def __init__(self, buf, needs_value: Callable[[str], bool]):
        self.buf = buf
        self.needs_value = needs_value
        self.state: Dict[str, Any] = {}
        self.needed: List = []  # (key, start, end) of values parsed at the end

    def run(self) -> Dict[str, Any]:
        buf = self.buf
        pos = WS.match(buf, 0).end()
        if buf[pos:pos + 1] != b"{":
            raise _Invalid("not an object")
        pos = self._top(pos + 1)
        if WS.match(buf, pos).end() != len(buf):
            raise _Invalid("extra data")
        for key, start, end in self.needed:
            if end - start > NEEDED_MAX:
                raise _Invalid(f"{key} is too large")
            self.state[key] = loads_strict(buf[start:end])
        return self.state

    def _keep(self, token: bytes, start: int, end: int) -> None:
        """Keep the top-level member ``token`` (a key) if its value is wanted or an object reference."""
        key = json.loads(token) if b"\\" in token else token[1:-1].decode("utf-8")
        if self.needs_value(key):
            self.state[key] = None  # parsed once the whole document is known to be valid
            self.needed.append((key, start, end))
        elif end - start == 66 and self.buf[start:start + 1] == b'"':
            value = self.buf[start + 1:end - 1].decode("ascii", "replace")
            if _SHA.match(value):
                self.state[key] = value

    def _top(self, pos: int) -> int:
        """The top-level object's members from ``pos`` (after ``{``); returns the end."""
        buf = self.buf
        keys = _KeyTable(buf)
        released = 0
        pos = WS.match(buf, pos).end()
        if buf[pos:pos + 1] == b"}":
            return pos + 1
        while True:
            if pos - released > _RELEASE:
                _release(buf, released, pos)
                released = pos
            match = MEMBER.match(buf, pos)
            if match:
                keys.add(match.group(1), match.start(1))
                self._keep(match.group(1), match.start(2), match.end(2))
                pos = match.end()
                if match.group(3) == b"}":
                    return pos
                continue
            match = KEY.match(buf, pos)
            if not match:
                raise _Invalid("expected a key")
            keys.add(match.group(1), match.start(1))
            start = match.end()
            end = self._flat_object(start) if buf[start:start + 1] == b"{" else 0
            if not end:
                end = self._value(start, 1)
            self._keep(match.group(1), start, end)
            pos = WS.match(buf, end).end()
            sep = buf[pos:pos + 1]
            if sep == b"}":
                return pos + 1
            if sep != b",":
                raise _Invalid("expected , or }")
            pos += 1

    def _flat_object(self, pos: int) -> int:
        """The end of the object at ``pos`` if all its members are simple, else 0 (not checked).

        PERF: the common case (a state of many small objects) without the
        frames of :meth:`_value`.
        """
        buf, member = self.buf, MEMBER.match
        keys: set = set()
        pos += 1
        while True:
            match = member(buf, pos)
            if match is None:
                return 0
            token = match.group(1)
            key = _key(token) if b"\\" in token else token[1:-1]
            if key in keys or len(keys) >= MAX_KEYS:
                raise _Invalid("duplicate key or too many keys")
            keys.add(key)
            pos = match.end()
            if match.group(3) == b"}":
                return pos

    def _value(self, pos: int, depth: int) -> int:
        """Check the value at ``pos`` (no leading space), inside a container at nesting ``depth``.

        Returns the value's end. Containers are walked with an explicit stack,
        not recursion: a frame is the set of keys seen so far for an object,
        ``None`` for an array.
        """
        buf = self.buf
        stack: List[Optional[set]] = []
        at_value = True
        while True:
            if at_value:
                char = buf[pos:pos + 1]
                if char == b"{" or char == b"[":
                    level = depth + len(stack) + 1
                    if level > MAX_DEPTH:
                        raise _Invalid("too deep")
                    pos = WS.match(buf, pos + 1).end()
                    if buf[pos:pos + 1] == (b"}" if char == b"{" else b"]"):
                        pos += 1
                    else:
                        frame = set() if char == b"{" else None
                        stack.append(frame)
                        pos, closed = self._more(pos, frame, level, first=True)
                        if not closed:
                            continue  # pos is at the next value, which needs a frame or a closer look
                        stack.pop()
                elif char == b'"':
                    pos = _string_end(buf, pos)
                elif char and char in b"-0123456789":
                    match = NUMBER.match(buf, pos)
                    if not match:
                        raise _Invalid("bad number")
                    _check_number(match.group())
                    pos = match.end()
                else:
                    match = LITERAL.match(buf, pos)
                    if not match:
                        raise _Invalid("bad value")
                    pos = match.end()
                at_value = False
            # a value ended at pos
            if not stack:
                return pos
            frame = stack[-1]
            pos = WS.match(buf, pos).end()
            sep = buf[pos:pos + 1]
            if sep == b",":
                pos, closed = self._more(pos + 1, frame, depth + len(stack), first=False)
                if closed:
                    stack.pop()
                else:
                    at_value = True
            elif sep == (b"]" if frame is None else b"}"):
                stack.pop()
                pos += 1
            else:
                raise _Invalid("expected a separator")

    def _more(self, pos: int, frame: Optional[set], level: int, first: bool) -> Tuple[int, bool]:
        """The next members (``frame`` a key set) or elements (``None``) of a container at ``level``.

        Simple ones are taken fast. Returns ``(end, True)`` when the container
        closed, else ``(position of the next value, False)``, its key recorded.
        """
        buf = self.buf
        fast = level < MAX_DEPTH  # an empty container inside would be one level deeper
        if frame is None:
            while fast:
                match = ELEMENTS.match(buf, pos)
                if match:
                    pos = match.end()
                match = ELEMENT.match(buf, pos)
                if match is None:
                    break
                pos = match.end()
                if match.group(1) == b"]":
                    return pos, True
            return WS.match(buf, pos).end(), False
        while fast:
            match = MEMBER.match(buf, pos)
            if match is None:
                break
            _add_key(frame, match.group(1))
            pos = match.end()
            if match.group(3) == b"}":
                return pos, True
        match = KEY.match(buf, pos)
        if match is None:
            raise _Invalid("expected a key")
        _add_key(frame, match.group(1))
        return match.end(), False
