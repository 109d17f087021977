"""The path globs of a pvs@2 header's ``include`` and ``exclude`` (docs/protocol.md §D12.3).

Upstream matches each state key with POSIX ``fnmatch`` in pathname mode:
``*``, ``?`` and bracket expressions never match a ``/``; a backslash quotes
the next character. A glob ending in ``/**`` names its folder and everything
under it (its folder part is matched with "leading directory" semantics:
``dir/**`` matches ``dir`` and ``dir/a/b``). ``**`` alone matches nothing a
state key can be (upstream matches it as the empty folder; kept, §12).
"""
from __future__ import annotations

import functools
import re
from typing import Iterable, Pattern


def _bracket(glob: str, i: int):
    """Translate the bracket expression at ``glob[i] == '['``; ``None`` when unterminated."""
    j = i + 1
    negate = j < len(glob) and glob[j] in "!^"
    if negate:
        j += 1
    start = j
    if j < len(glob) and glob[j] == "]":  # a leading ']' is a member
        j += 1
    while j < len(glob) and glob[j] != "]":
        j += 1
    if j >= len(glob):
        return None
    members = glob[start:j]
    body = "".join("\\" + c if c in "\\^][" else c for c in members)
    # NOTE: pathname mode: a bracket never matches '/', negated or not.
    return ("[^/" + body + "]" if negate else "(?!/)[" + body + "]"), j + 1


def _translate(glob: str) -> str:
    out = []
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            translated = _bracket(glob, i)
            if translated is None:
                out.append(re.escape(char))
                i += 1
            else:
                out.append(translated[0])
                i = translated[1]
        elif char == "\\" and i + 1 < len(glob):
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(char))
            i += 1
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def compile_glob(glob: str) -> Pattern[str]:
    """The regular expression a pvs glob stands for (matched against a whole key)."""
    if glob == "**":
        folder, leading = "", True
    elif glob.endswith("/**"):
        # dirname(3) of "dir/**" is "dir"; of "/**" it is "/".
        folder, leading = glob[:-3] or "/", True
    else:
        folder, leading = glob, False
    pattern = _translate(folder)
    if leading:
        pattern += "(?:/.*)?"
    return re.compile(pattern + r"\Z", re.DOTALL)


def matches(glob: str, key: str) -> bool:
    """Whether state key ``key`` is named by ``glob``."""
    return compile_glob(glob).match(key) is not None


def matches_any(globs: Iterable[str], key: str) -> bool:
    return any(matches(glob, key) for glob in globs)
