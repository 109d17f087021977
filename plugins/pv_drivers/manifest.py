"""Driver module strings: placeholders and parameters.

The BSP manifest is ``bsp/drivers.json`` of the running revision
(docs/protocol.md §D7.1), read by the revision model (``pv_steps_revision``:
``driver_aliases(fitconfig)``, each container's ``drivers``)::

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

_PLACEHOLDER = re.compile(r"\$\{user-meta:([^}]*)\}")


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
