"""Checked hook names: a misspelled contract hook fails loudly, never silently.

Two mistakes pluggy lets pass, because a contract exists only while its owner
is loaded (docs/architecture.md §3):

* ``core.call("pv_steps_revison")`` would answer its default as if pv_steps
  were disabled. :func:`classify` tells a hook whose owner is absent (blocked,
  or installed but not loaded) from a name nobody declares; ``Core.call``
  raises :class:`UnknownHook` for the latter, and :func:`check` refuses the
  boot when a plugin's source calls such a name as a string literal.
* ``@hookimpl(optionalhook=True) def pv_daemons_declre(...)`` would be
  registered and never called. :func:`check` refuses the boot when an
  unverified implementation carries a loaded owner's prefix, and suggests the
  closest of that owner's hooks.
"""
from __future__ import annotations

import difflib
import functools
import importlib.metadata
import inspect
import os
import re
from typing import Iterable, List, Optional, Tuple

from pvcore.errors import StartupError

#: ``core.call("name"`` / ``self._core.call("name"`` in a plugin's source.
_CALL = re.compile(r"""core\.call\(\s*["']([a-z][a-z0-9]*_[a-z0-9_]+)["']""")
#: ``core.publish("type"`` / ``self._publish("type"`` in a plugin's source.
_PUBLISH = re.compile(r"""publish\(\s*["']([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+)["']""")
CORE = "pvcore"


class UnknownHook(LookupError):
    """``core.call`` of a hook no loaded or known-but-absent owner declares."""


@functools.lru_cache(maxsize=None)
def installed_plugins() -> frozenset:
    """Names of the ``pvcore`` entry points installed (loaded or not)."""
    return frozenset(ep.name for dist in importlib.metadata.distributions()
                     for ep in dist.entry_points if ep.group == "pvcore")


def _owners(pm) -> Tuple[List[str], List[str]]:
    """(loaded plugin names, known-but-absent names: blocked or installed, not loaded)."""
    loaded, absent = [CORE], []
    for name, plugin in pm.list_name_plugin():
        (absent if plugin is None else loaded).append(name)
    absent += [name for name in installed_plugins() if not pm.has_plugin(name) and name not in absent]
    return loaded, absent


def owner_of(hook_name: str, names: Iterable[str]) -> Optional[str]:
    """The longest of ``names`` that ``hook_name`` starts with, followed by ``_``."""
    found = [name for name in names if hook_name.startswith(name + "_")]
    return max(found, key=len) if found else None


def specs_of(pm, owner: str) -> List[str]:
    """The declared hooks carrying ``owner``'s prefix."""
    return sorted(name for name, caller in vars(pm.hook).items()
                  if getattr(caller, "spec", None) is not None and name.startswith(owner + "_"))


def suggestion(pm, hook_name: str, owner: str, cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(hook_name, specs_of(pm, owner), n=1, cutoff=cutoff)
    return f"; did you mean {close[0]}?" if close else ""


def classify(pm, hook_name: str) -> str:
    """``"declared"``, ``"absent"`` (its owner is blocked or installed but not
    loaded: the caller gets its default) or ``"unknown"`` (a mistake)."""
    caller = getattr(pm.hook, hook_name, None)
    if caller is not None and caller.spec is not None:
        return "declared"
    loaded, absent = _owners(pm)
    owner = owner_of(hook_name, loaded + absent)
    return "absent" if owner is not None and owner in absent else "unknown"


def _misspelled_owner(pm, hook_name: str, loaded: List[str]) -> Optional[str]:
    """The loaded owner ``hook_name`` claims to belong to, or ``None``.

    The core's own prefix (``pvcore_``) is also the start of third-party
    names (``pvcore_greeter_…``): it counts only when the name is close to
    one of the core's hooks.
    """
    owner = owner_of(hook_name, loaded)
    if owner == CORE and not suggestion(pm, hook_name, CORE, cutoff=0.85):
        return None
    return owner


def unknown_message(pm, hook_name: str) -> str:
    loaded, absent = _owners(pm)
    owner = _misspelled_owner(pm, hook_name, loaded)
    if owner is None:
        return f"no loaded or installed plugin declares a hook named {hook_name}"
    return f"{hook_name} is no hook of {owner}{suggestion(pm, hook_name, owner)}"


@functools.lru_cache(maxsize=256)
def _literals(path: str, mtime: float) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """(hook names called, event types published) as literals in ``path``."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    return tuple(_CALL.findall(text)), tuple(_PUBLISH.findall(text))


def _sources(plugin) -> List[str]:
    """The ``.py`` files of a module plugin's package (or the module alone)."""
    if not inspect.ismodule(plugin):
        return []
    path = getattr(plugin, "__file__", None) or ""
    if not path.endswith(".py"):
        return []
    if os.path.basename(path) != "__init__.py":
        return [path]
    folder = os.path.dirname(path)
    return [os.path.join(folder, name) for name in sorted(os.listdir(folder)) if name.endswith(".py")]


def static_calls(plugin, which: int = 0) -> List[Tuple[str, str]]:
    """``(file, hook name)`` for each ``core.call("name"`` literal in ``plugin``'s
    source (``which=1``: each ``publish("type"`` literal)."""
    found = []
    for path in _sources(plugin):
        try:
            names = _literals(path, os.stat(path).st_mtime)[which]
        except OSError:
            continue
        found += [(path, name) for name in names]
    return found


def static_publishes(plugin) -> List[Tuple[str, str]]:
    """``(file, event type)`` for each ``publish("type"`` literal in ``plugin``'s source."""
    return static_calls(plugin, 1)


def check(pm) -> None:
    """Refuse the boot on a misspelled optional implementation or a
    ``core.call`` literal naming no known hook (one line, naming the plugin).

    :raises StartupError: with the closest declared hook suggested.
    """
    loaded, absent = _owners(pm)
    for hook_name, caller in vars(pm.hook).items():
        if getattr(caller, "spec", True) is not None:
            continue
        if owner_of(hook_name, loaded + absent) in absent:
            continue  # the owner is merely absent: the implementation waits for it
        owner = _misspelled_owner(pm, hook_name, loaded)
        impls = caller.get_hookimpls()
        if owner is None or not impls:
            continue
        raise StartupError(f"plugin {impls[0].plugin_name}: optional hook {hook_name} matches no hook of "
                           f"{owner}{suggestion(pm, hook_name, owner)}")
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        for path, hook_name in static_calls(plugin):
            if classify(pm, hook_name) == "unknown":
                raise StartupError(f"plugin {name}: {os.path.basename(path)} calls "
                                   f"{unknown_message(pm, hook_name)}")
