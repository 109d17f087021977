"""The plugin manager, built in a function (never at import).

Every mistake a plugin can make while the plugin manager is built (an import
that fails, a misspelled hook, a hookimpl asking for an argument its spec
lacks, a name taken twice) raises :class:`pvcore.errors.StartupError` with
one line naming the plugin and its distribution (docs/plugins.md, "Boot
errors"); the traceback is logged at debug level only.
"""
from __future__ import annotations

import importlib.metadata
import os
from typing import Iterable, Optional, Sequence

import pluggy

import structlog

from pvcore import caller, eventlog, hookspecs, introspect, logdir
from pvcore.errors import StartupError
from pvcore.labels import dist_of, plugin_label, readable_name

log = structlog.get_logger(__name__)

#: Modules of the core that are plugins themselves and cannot be disabled.
ESSENTIAL_PLUGINS = (caller, introspect, eventlog, logdir)


def split_names(text: str) -> list:
    """``"a, b"`` -> ``["a", "b"]`` (the ``disable_plugins`` setting)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def disabled_from_env(environ=None) -> list:
    """Plugin names listed in ``PVCORE_DISABLE_PLUGINS=a,b``."""
    return split_names((environ if environ is not None else os.environ).get("PVCORE_DISABLE_PLUGINS", ""))


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
    only: Optional[Iterable[str]] = None,
) -> pluggy.PluginManager:
    """Build the plugin manager.

    :param load_entrypoints: load every plugin of the ``pvcore`` entry-point
        group (built-ins are registered there too).
    :param plugins: extra plugins: modules/objects, or ``(name, plugin)`` pairs.
        Unnamed ones get a readable name (:func:`readable_name`).
    :param disabled: plugin names to block; defaults to ``PVCORE_DISABLE_PLUGINS``
        (:func:`pvcore.loader.load_core` passes the ``disable_plugins`` setting).
    :param trace: log every hook call; defaults to ``PVCORE_TRACE_HOOKS``.
    :param only: load just these entry points, by name (the ``plugins``
        setting), not every installed one: a named plugin that is not
        installed is a boot error.
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
                if only is None:
                    pm.load_setuptools_entrypoints("pvcore")
                else:
                    _load_named_entrypoints(pm, only)
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
                raise StartupError(f"plugin {name} ({dist_of(pm, plugin)}): {exc}") from None
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin = exc.plugin
        label = pm.get_name(plugin) if pm.is_registered(plugin) else readable_name(plugin)
        # pluggy's message spans three lines: keep the promise of one.
        reason = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise StartupError(f"plugin {label} ({dist_of(pm, plugin)}): {reason}") from None
    return pm


def _load_named_entrypoints(pm, names: Iterable[str]) -> None:
    installed = {ep.name for ep in importlib.metadata.entry_points(group="pvcore")}
    for name in names:
        if name not in installed:
            raise StartupError(f"plugin {name} (named in the plugins setting): no such pvcore entry point "
                               f"is installed; installed: {', '.join(sorted(installed)) or 'none'}")
        pm.load_setuptools_entrypoints("pvcore", name=name)


def _trace(pm) -> None:
    hooks_log = structlog.get_logger("pvcore.hooks")

    def before(hook_name, hook_impls, kwargs):
        hooks_log.debug("hook_call", hook=hook_name, plugins=[impl.plugin_name for impl in hook_impls])

    def after(outcome, hook_name, hook_impls, kwargs):
        hooks_log.debug("hook_done", hook=hook_name, failed=outcome.exception is not None)

    pm.add_hookcall_monitoring(before, after)
