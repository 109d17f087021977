"""How boot errors name a plugin: ``"<name> (<distribution> <version>)"``.

A leaf module (it imports nothing of pvcore) so that everything that reports a
plugin's mistake, at any stage of the boot, can name it without importing the
plugin manager (docs/architecture.md §1).
"""
from __future__ import annotations

import functools
import importlib.metadata
import inspect
from typing import Dict


def dist_of(pm, plugin) -> str:
    """``"<distribution> <version>"`` of ``plugin``, or ``"not installed"``."""
    for plug, dist in pm.list_plugin_distinfo():
        if plug is plugin:
            return f"{dist.project_name} {dist.version}"
    module = getattr(plugin, "__name__", None) if inspect.ismodule(plugin) else getattr(plugin, "__module__", None)
    if module and module.split(".")[0] == "pvcore":
        return f"pvcore {_version('pvcore')}"  # the core's own plugins (caller, introspect)
    if pm.is_registered(plugin):
        # Registered in code (tests, embedding): an installed module still
        # has its distribution; an inline class has none.
        return _entry_point_dists().get(module, "not installed")
    # A plugin refused while registering is not in pluggy's list: find the
    # distribution whose entry point names its module (uncached: this is a
    # failing boot, and the distribution may be new).
    return _entry_point_dists.__wrapped__().get(module, "not installed")


@functools.lru_cache(maxsize=None)
def _entry_point_dists() -> Dict[str, str]:
    """Module of each ``pvcore`` entry point -> its distribution and version."""
    found: Dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == "pvcore":
                found.setdefault(ep.value.split(":")[0], f"{dist.metadata['Name']} {dist.version}")
    return found


@functools.lru_cache(maxsize=None)
def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def plugin_label(pm, plugin) -> str:
    """``"<name> (<distribution> <version>)"``: how boot errors name a plugin."""
    name = pm.get_name(plugin) if pm.is_registered(plugin) else None
    return f"{name or readable_name(plugin)} ({dist_of(pm, plugin)})"


def readable_name(plugin) -> str:
    """A name for a plugin registered without one: a module's or class's
    ``__name__``, an instance's class name (pluggy would use ``id()``)."""
    return getattr(plugin, "__name__", None) or type(plugin).__name__
