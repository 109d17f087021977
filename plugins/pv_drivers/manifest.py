"""Reading driver declarations: the BSP manifest and a container's references.

The BSP manifest is ``bsp/drivers.json`` of the running revision
(docs/protocol.md §D7.1)::

    {"#spec": "driver-aliases@1",
     "all": {"<alias>": ["<module> [params]", ...]},
     "fitconfig:<name>": {"<alias>": [...]}}

``all`` always applies; ``fitconfig:<name>`` applies when ``<name>`` is the
configured FIT configuration, and its aliases replace same-named ones of
``all``. Module strings may hold ``${user-meta:KEY}`` placeholders, replaced
by the user-meta value (empty when missing) each time the module is loaded.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

MANIFEST_KEY = "bsp/drivers.json"
TYPES = (("required", "REQUIRED"), ("optional", "OPTIONAL"), ("manual", "MANUAL"))
_PLACEHOLDER = re.compile(r"\$\{user-meta:([^}]*)\}")


def _alias_section(section: Any) -> Dict[str, List[str]]:
    if not isinstance(section, dict):
        return {}
    result = {}
    for alias, modules in section.items():
        if isinstance(modules, list) and all(isinstance(m, str) for m in modules):
            result[alias] = list(modules)
    return result


def bsp_aliases(state: Optional[Mapping[str, Any]], fitconfig: str = "") -> Dict[str, List[str]]:
    """Alias → module strings from ``state``'s manifest (``{}`` without one)."""
    manifest = (state or {}).get(MANIFEST_KEY)
    if not isinstance(manifest, dict):
        return {}
    aliases = _alias_section(manifest.get("all"))
    if fitconfig:
        aliases.update(_alias_section(manifest.get("fitconfig:" + fitconfig)))
    return aliases


def references(run: Optional[Mapping[str, Any]]) -> List[Tuple[str, str]]:
    """``(alias, TYPE)`` for each driver a ``run.json`` references, in
    required, optional, manual order."""
    drivers = (run or {}).get("drivers") if isinstance(run, Mapping) else None
    if not isinstance(drivers, Mapping):
        return []
    result = []
    for key, kind in TYPES:
        names = drivers.get(key)
        for name in names if isinstance(names, list) else ():
            if isinstance(name, str):
                result.append((name, kind))
    return result


def container_run(state: Optional[Mapping[str, Any]], name: str) -> Optional[Mapping[str, Any]]:
    """The ``<name>/run.json`` object of ``state``, if any."""
    run = (state or {}).get(name + "/run.json")
    return run if isinstance(run, Mapping) else None


def substitute(text: str, user_meta: Optional[Mapping[str, str]]) -> str:
    """Replace ``${user-meta:KEY}`` with the value of KEY (empty if missing)."""
    meta = user_meta or {}
    return _PLACEHOLDER.sub(lambda m: str(meta.get(m.group(1), "") or ""), text)


def split_module(text: str) -> Tuple[str, str]:
    """``"brcmfmac opt=1"`` → ``("brcmfmac", "opt=1")``."""
    parts = text.strip().split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1].strip() if len(parts) > 1 else ""
