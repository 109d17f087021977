"""Calling plugins at boot, and naming the plugin at fault when one fails.

Every mistake a plugin makes while the core is built or started (a hook that
raises, a malformed answer, a setting clash) becomes one
:class:`pvcore.errors.StartupError` line naming the plugin and its
distribution; the traceback goes to the debug log only (docs/plugins.md,
"Boot errors").
"""
from __future__ import annotations

from typing import Any, List, Tuple

import structlog

from pvcore.errors import StartupError
from pvcore.labels import plugin_label
from pvcore.settings import Settings, SettingsError

log = structlog.get_logger(__name__)


def call_impl(impl, **kwargs):
    return impl.function(*[kwargs[name] for name in impl.argnames])



def reason(exc: BaseException) -> str:
    # A StartupError a plugin raised on purpose already says what is wrong.
    return str(exc) if isinstance(exc, StartupError) else f"{type(exc).__name__}: {exc}"


def boot_error(pm, plugin, what: str, exc: BaseException) -> StartupError:
    """One line naming ``plugin``; the traceback goes to the debug log only."""
    label = plugin_label(pm, plugin)
    log.debug("plugin_boot_error", plugin=label, step=what, exc_info=exc)
    return StartupError(f"plugin {label}: {what}: {reason(exc)}")


def _blame(pm, hook_name: str, exc: BaseException):
    """The plugin whose implementation of ``hook_name`` raised ``exc``."""
    impls = {getattr(impl.function, "__code__", None): impl.plugin
             for impl in getattr(pm.hook, hook_name).get_hookimpls()}
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in impls:
            return impls[tb.tb_frame.f_code]
        tb = tb.tb_next
    return None


def call_hook_at_boot(pm, hook_name: str, **kwargs) -> None:
    """Fire a broadcast hook; a plugin that raises becomes a one-line StartupError."""
    try:
        getattr(pm.hook, hook_name)(**kwargs)
    except Exception as exc:
        plugin = _blame(pm, hook_name, exc)
        if plugin is None:
            raise
        raise boot_error(pm, plugin, f"{hook_name} raised", exc) from None


def declare_plugin_settings(settings: Settings, pm) -> None:
    for impl in reversed(pm.hook.pvcore_declare_settings.get_hookimpls()):
        try:
            declared = call_impl(impl) or ()
            if isinstance(declared, (str, bytes)) or not hasattr(declared, "__iter__"):
                raise StartupError(f"pvcore_declare_settings must return a list of Setting, not {declared!r}")
            settings.declare(declared, owner=pm.get_name(impl.plugin))
        except SettingsError as exc:
            raise boot_error(pm, impl.plugin, "settings", StartupError(str(exc))) from None
        except Exception as exc:
            raise boot_error(pm, impl.plugin, "pvcore_declare_settings", exc) from None
    try:
        settings.check_file()
    except SettingsError as exc:
        raise StartupError(str(exc)) from None


def collect_services(core) -> List[Tuple[Any, str]]:
    """Every plugin's services with the label of the plugin that gave it,
    in start order (priority, then hook order)."""
    pm = core.pm
    services: List[Tuple[Any, str]] = []
    for impl in reversed(pm.hook.pvcore_services.get_hookimpls()):
        owner = plugin_label(pm, impl.plugin)
        try:
            group = call_impl(impl, core=core) or ()
            for service in group:
                for attr in ("start", "stop"):
                    if not callable(getattr(service, attr, None)):
                        raise StartupError(f"{service!r} has no {attr}() (see pvcore.services.Service)")
                if not isinstance(getattr(service, "name", None), str):
                    raise StartupError(f"{service!r} has no name")
                if not isinstance(getattr(service, "priority", 100), int):
                    raise StartupError(f"service {service.name}: priority must be an int")
                services.append((service, owner))
        except Exception as exc:
            raise boot_error(pm, impl.plugin, "pvcore_services", exc) from None
    services.sort(key=lambda pair: getattr(pair[0], "priority", 100))
    return services
