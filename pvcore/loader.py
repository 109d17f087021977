"""From environment to :class:`pvcore.app.Core`, for servers and tools."""
from __future__ import annotations

from typing import Any, Mapping, Optional

import structlog

from pvcore.app import Core, build_core
from pvcore.errors import StartupError
from pvcore.plugins import get_plugin_manager, plugin_label, split_names
from pvcore.settings import Settings

log = structlog.get_logger(__name__)


def load_core(overrides: Optional[Mapping[str, Any]] = None, env: Optional[Mapping[str, str]] = None) -> Core:
    """Settings from the environment, plugins from entry points, the demo
    device seeded when asked (``PVCORE_DEMO=1``) and the storage is empty.

    The demo device's ``buildinfo`` defaults to a manifest of what runs
    (:func:`pvcore_demo.build_manifest`); a manifest given by file,
    environment or ``overrides`` is kept.
    """
    settings = Settings(overrides, env)
    pm = get_plugin_manager(disabled=split_names(settings.disable_plugins), trace=settings.trace_hooks,
                            only=split_names(settings.plugins) or None)
    if settings.demo:
        try:
            from pvcore_demo import build_manifest
        except ImportError:
            raise StartupError("PVCORE_DEMO=1 needs the demo device: pip install contrib/pvcore-demo") from None

        labels = [plugin_label(pm, plugin) for _, plugin in pm.list_name_plugin() if plugin is not None]
        settings.supply("buildinfo", build_manifest(labels), source="demo")
    core = build_core(settings, pm)
    if settings.demo and settings.demo_seed:
        from pvcore_demo import seed

        # Through the owners' contracts, once they are loaded and before
        # anything starts (pvcore_demo/__init__.py).
        if seed(core):
            log.info("demo_device_seeded", storage_dir=settings.storage_dir)
    return core
