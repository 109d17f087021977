"""The plugin manager, built in a function (never at import).

Every mistake a plugin can make while the plugin manager is built (an import
that fails, a misspelled hook, a hookimpl asking for an argument its spec
lacks, a name taken twice) raises :class:`pvcore.errors.StartupError` with
one line naming the plugin and its distribution (docs/plugins.md, "Boot
errors"); the traceback is logged at debug level only.
"""
from __future__ import annotations

import functools
import importlib.metadata
import inspect
import os
from typing import Dict, Iterable, Optional, Sequence

import pluggy

import structlog

from pvcore import caller, eventlog, hookspecs, introspect, logdir
from pvcore.errors import StartupError

log = structlog.get_logger(__name__)

#: Modules of the core that are plugins themselves and cannot be disabled.
ESSENTIAL_PLUGINS = (caller, introspect, eventlog, logdir)


def split_names(text: str) -> list:
    """``"a, b"`` -> ``["a", "b"]`` (the ``disable_plugins`` setting)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def disabled_from_env(environ=None) -> list:
    """Plugin names listed in ``PVCORE_DISABLE_PLUGINS=a,b``."""
    return split_names((environ if environ is not None else os.environ).get("PVCORE_DISABLE_PLUGINS", ""))


def _dist_of(pm, plugin) -> str:
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
    return f"{name or readable_name(plugin)} ({_dist_of(pm, plugin)})"


def readable_name(plugin) -> str:
    """A name for a plugin registered without one: a module's or class's
    ``__name__``, an instance's class name (pluggy would use ``id()``)."""
    return getattr(plugin, "__name__", None) or type(plugin).__name__


def _free_name(pm, plugin) -> str:
    base = readable_name(plugin)
    name, n = base, 1
    while pm.has_plugin(name):
        n += 1
        name = f"{base}-{n}"
    return name


def _failed_entry_point(pm, exc: BaseException) -> StartupError:
    """The entry point whose import raised ``exc``, as a one-line error."""
    log.debug("plugin_import_failed", exc_info=exc)
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != "pvcore" or pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            try:
                ep.load()
            except Exception as again:  # this is the one (imports fail the same way twice)
                return StartupError(f"plugin {ep.name} ({dist.metadata['Name']} {dist.version}): "
                                    f"cannot import {ep.value}: {type(again).__name__}: {again}")
    return StartupError(f"loading the pvcore plugins failed: {type(exc).__name__}: {exc}")


def get_plugin_manager(
    load_entrypoints: bool = True,
    plugins: Sequence = (),
    disabled: Optional[Iterable[str]] = None,
    trace: Optional[bool] = None,
) -> pluggy.PluginManager:
    """Build the plugin manager.

    :param load_entrypoints: load every plugin of the ``pvcore`` entry-point
        group (built-ins are registered there too).
    :param plugins: extra plugins: modules/objects, or ``(name, plugin)`` pairs.
        Unnamed ones get a readable name (:func:`readable_name`).
    :param disabled: plugin names to block; defaults to ``PVCORE_DISABLE_PLUGINS``
        (:func:`pvcore.loader.load_core` passes the ``disable_plugins`` setting).
    :param trace: log every hook call; defaults to ``PVCORE_TRACE_HOOKS``.
    :raises StartupError: a plugin cannot be imported, a hookimpl names no
        known hook (usually a typo) or has arguments its spec lacks, a name
        is taken twice; the message names the plugin and its distribution.
    """
    pm = pluggy.PluginManager("pvcore")
    pm.add_hookspecs(hookspecs)
    # NOTE: historic, so every plugin registered below gets to add the
    # contract hookspecs it owns before check_pending() validates impls.
    pm.hook.pvcore_addhooks.call_historic(kwargs=dict(pluginmanager=pm))
    if os.environ.get("PVCORE_TRACE_HOOKS") if trace is None else trace:
        _trace(pm)
    for module in ESSENTIAL_PLUGINS:
        pm.register(module, name=module.__name__)
    for name in disabled_from_env() if disabled is None else disabled:
        pm.set_blocked(name)
    try:
        if load_entrypoints:
            try:
                pm.load_setuptools_entrypoints("pvcore")
            except pluggy.PluginValidationError:
                raise
            except Exception as exc:
                raise _failed_entry_point(pm, exc) from None
        for plugin in plugins:
            name, plugin = plugin if isinstance(plugin, tuple) else (None, plugin)
            name = name or _free_name(pm, plugin)
            if pm.is_blocked(name):
                continue
            try:
                pm.register(plugin, name=name)
            except ValueError as exc:  # the same plugin or name twice
                raise StartupError(f"plugin {name} ({_dist_of(pm, plugin)}): {exc}") from None
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin = exc.plugin
        label = pm.get_name(plugin) if pm.is_registered(plugin) else readable_name(plugin)
        # pluggy's message spans three lines: keep the promise of one.
        reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise StartupError(f"plugin {label} ({_dist_of(pm, plugin)}): {reason}") from None
    return pm


def _trace(pm) -> None:
    hooks_log = structlog.get_logger("pvcore.hooks")

    def before(hook_name, hook_impls, kwargs):
        hooks_log.debug("hook_call", hook=hook_name, plugins=[impl.plugin_name for impl in hook_impls])

    def after(outcome, hook_name, hook_impls, kwargs):
        hooks_log.debug("hook_done", hook=hook_name, failed=outcome.exception is not None)

    pm.add_hookcall_monitoring(before, after)
