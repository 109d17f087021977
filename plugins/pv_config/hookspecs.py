"""The configuration contract, owned by pv_config (docs/architecture.md §3).

pv_config holds every configuration entry of the device, one value per level
(default, conf file, env, metadata, command). Other plugins read effective
values and set command-level overrides through these hooks; every change is
published as a ``config.changed`` event. pv_config learns user metadata from
``meta.user`` events, never by asking, so it depends on no other plugin.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import pluggy

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from pvcore.app import Core

hookspec = pluggy.HookspecMarker("pvcore")


@hookspec(firstresult=True)
def pv_config_get(core: "Core", key: str) -> Any:
    """Effective value of configuration entry ``key`` (canonical or alias). *firstresult*

    :return: the value as a Python object (bool, int, str), or ``None`` for
        an unknown key.
    """


@hookspec(firstresult=True)
def pv_config_set(core: "Core", key: str, value: Any, level: str) -> Optional[bool]:
    """Override configuration entry ``key`` at ``level`` (``"command"`` …). *firstresult*

    :param value: the new value, ``None`` to drop the override.
    :return: ``True`` when stored, ``False`` for an unknown key or level or
        a value of the wrong type.
    """
