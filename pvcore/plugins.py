"""The plugin manager, built in a function (never at import)."""
from __future__ import annotations

import importlib.metadata
import os
from typing import Iterable, Optional, Sequence

import pluggy

from pvcore import caller, eventlog, hookspecs, introspect
from pvcore.errors import StartupError

#: Modules of the core that are plugins themselves and cannot be disabled.
ESSENTIAL_PLUGINS = (caller, introspect, eventlog)


def disabled_from_env(environ=None) -> list:
    """Plugin names listed in ``PVCORE_DISABLE_PLUGINS=a,b``."""
    text = (environ if environ is not None else os.environ).get("PVCORE_DISABLE_PLUGINS", "")
    return [name.strip() for name in text.split(",") if name.strip()]


def _dist_of(pm, plugin) -> str:
    for plug, dist in pm.list_plugin_distinfo():
        if plug is plugin:
            return f"{dist.project_name} {dist.version}"
    # A plugin refused while registering is not in pluggy's list: find the
    # distribution whose entry point names its module.
    module = getattr(plugin, "__name__", None)
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == "pvcore" and ep.value.split(":")[0] == module:
                return f"{dist.metadata['Name']} {dist.version}"
    return "not installed"


def get_plugin_manager(
    load_entrypoints: bool = True,
    plugins: Sequence = (),
    disabled: Optional[Iterable[str]] = None,
) -> pluggy.PluginManager:
    """Build the plugin manager.

    :param load_entrypoints: load every plugin of the ``pvcore`` entry-point
        group (built-ins are registered there too).
    :param plugins: extra plugins: modules/objects, or ``(name, plugin)`` pairs.
    :param disabled: plugin names to block; defaults to ``PVCORE_DISABLE_PLUGINS``.
    :raises StartupError: a hookimpl names no known hook (usually a typo) or
        has arguments its spec lacks; the message names the plugin and its
        distribution.
    """
    pm = pluggy.PluginManager("pvcore")
    pm.add_hookspecs(hookspecs)
    if os.environ.get("PVCORE_TRACE_HOOKS"):
        _trace(pm)
    for module in ESSENTIAL_PLUGINS:
        pm.register(module, name=module.__name__)
    for name in disabled_from_env() if disabled is None else disabled:
        pm.set_blocked(name)
    try:
        if load_entrypoints:
            pm.load_setuptools_entrypoints("pvcore")
        for plugin in plugins:
            name, plugin = plugin if isinstance(plugin, tuple) else (None, plugin)
            if name is None or not pm.is_blocked(name):
                pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin = exc.plugin
        label = pm.get_name(plugin) if pm.is_registered(plugin) else getattr(plugin, "__name__", repr(plugin))
        raise StartupError(f"plugin {label} ({_dist_of(pm, plugin)}): {exc}") from None
    return pm


def _trace(pm) -> None:
    import structlog

    log = structlog.get_logger("pvcore.hooks")

    def before(hook_name, hook_impls, kwargs):
        log.debug("hook_call", hook=hook_name, plugins=[impl.plugin_name for impl in hook_impls])

    def after(outcome, hook_name, hook_impls, kwargs):
        log.debug("hook_done", hook=hook_name, failed=outcome.exception is not None)

    pm.add_hookcall_monitoring(before, after)
