"""From environment to :class:`pvcore.app.Core`, for servers and tools."""
from __future__ import annotations

from typing import Any, Mapping, Optional

import structlog

from pvcore.app import Core, build_core
from pvcore.plugins import get_plugin_manager
from pvcore.settings import Settings

log = structlog.get_logger(__name__)


def load_core(overrides: Optional[Mapping[str, Any]] = None, env: Optional[Mapping[str, str]] = None) -> Core:
    """Settings from the environment, plugins from entry points, the demo
    device seeded when asked (``PVCORE_DEMO=1``) and the storage is empty."""
    settings = Settings(overrides, env)
    if settings.demo:
        from pvcore.demo import seed_if_empty

        if seed_if_empty(settings.storage_dir):
            log.info("demo_device_seeded", storage_dir=settings.storage_dir)
    return build_core(settings, get_plugin_manager())
