"""Configuration value types: parsing input text, rendering for ``/config`` and ``/config2``.

Internally a value is ``str``/``None`` (STR), ``bool`` (BOOL) or ``int``
(INT, DURATION, the log-server outputs mask, and every enum as its ordinal).
"""
from __future__ import annotations

import re
from typing import Any, Dict, Optional, Sequence

STR, INT, BOOL, DURATION, MASK = "STR", "INT", "BOOL", "DURATION", "MASK"

#: Enum types: names in ordinal order (docs/protocol.md §7.12).
ENUMS: Dict[str, Sequence[str]] = {
    "BOOTLOADER": ("uboot", "uboot-pvk", "grub", "rpiab", "uboot-ab"),
    "INIT": ("embedded", "standalone", "appengine"),
    "PWR": ("disabled", "locks", "managed"),
    "SB": ("disabled", "audit", "lenient", "strict"),
    "TIMER": ("relative", "absolute"),
    "WDT": ("disabled", "shutdown", "startup", "always"),
}

#: Log-server output names → bits (upstream config.h); ``update`` is always set.
OUTPUT_BITS = {
    "nullsink": 1 << 0, "singlefile": 1 << 1, "filetree": 1 << 2, "stdout": 1 << 3,
    "stdout.containers": 1 << 4, "stdout.pantavisor": 1 << 5, "stdout_direct": 1 << 6,
}
OUTPUT_UPDATE = 1 << 7

_INT = re.compile(r"\s*[+-]?[0-9]+")
_DURATION = re.compile(r"\s*([0-9]+)\s*(s|min|h|d)?\s*")
_DURATION_UNITS = {None: 1, "s": 1, "min": 60, "h": 3600, "d": 86400}
_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off")


def _int(text: str) -> int:
    # NOTE: like strtol base 10 over the whole string; Python's int() would
    # also take "1_000" and trailing blanks.
    if not _INT.fullmatch(text):
        raise ValueError(f"not a number: {text!r}")
    return int(text)


def parse(type_: str, value: Any) -> Any:
    """Convert ``value`` (text from a file, env or metadata, or an already
    typed value from a command) to the internal form of ``type_``.

    :raises ValueError: the value does not parse for the type.
    """
    if type_ == STR:
        return None if value is None else str(value)
    if value is None:
        raise ValueError("no value")
    if type_ == BOOL:
        if isinstance(value, (bool, int)):
            return bool(value)
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        return _int(text) != 0
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if type_ == INT:
        return value if isinstance(value, int) else _int(str(value))
    if type_ == DURATION:
        if isinstance(value, int):
            return value
        match = _DURATION.fullmatch(str(value))
        if not match:
            raise ValueError(f"not a duration: {value!r}")
        return int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if type_ == MASK:
        if isinstance(value, int):
            return value | OUTPUT_UPDATE
        text = str(value).strip()
        if _INT.fullmatch(text):
            return int(text) | OUTPUT_UPDATE
        mask = OUTPUT_UPDATE
        for token in filter(None, (t.strip() for t in text.split(","))):
            if token not in OUTPUT_BITS:
                raise ValueError(f"unknown log server output {token!r}")
            mask |= OUTPUT_BITS[token]
        return mask
    names = ENUMS[type_]
    if isinstance(value, int):
        if 0 <= value < len(names):
            return value
        raise ValueError(f"no {type_} value {value}")
    text = str(value).strip().lower()
    if text in names:
        return names.index(text)
    if text.isdigit() and int(text) < len(names):
        return int(text)
    raise ValueError(f"not a {type_} name: {value!r}")


def as_json(type_: str, value: Any) -> Any:
    """The ``/config`` form: bool, number (enums as ordinals) or string/null."""
    return value


def as_text(type_: str, value: Any) -> str:
    """The ``/config2`` form: always a string; unset STR is ``"(null)"``."""
    if type_ == STR:
        return "(null)" if value is None else value
    if type_ == BOOL:
        return "1" if value else "0"
    if type_ in ENUMS:
        return ENUMS[type_][value]
    return str(value)


def as_python(type_: str, value: Any) -> Optional[Any]:
    """What ``pv_config_get`` returns: enums by name, the rest as stored."""
    if type_ in ENUMS:
        return ENUMS[type_][value]
    return value
