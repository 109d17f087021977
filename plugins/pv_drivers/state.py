"""Driver load state, per alias, and the operations that change it.

Kernel modules are device-wide, so the state is kept per alias, not per
container: an alias is ``LOADED`` once every module of it loaded, ``UNLOADED``
otherwise, ``UNKNOWN`` when the running BSP does not define it. Loading an
alias that is already loaded, or unloading one that is not, does nothing.
Loader calls are serialised by one lock. Each change of an alias' status is
published as a ``driver.status`` event (docs/plugins.md, "Publishing and following device events").
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import structlog

from pv_drivers import manifest

log = structlog.get_logger(__name__)

LOADED, UNLOADED, UNKNOWN = "LOADED", "UNLOADED", "UNKNOWN"


class DriverLoadError(RuntimeError):
    """A required driver of a starting container failed to load."""


class DriverState:
    """What the drivers endpoints and hooks act on.

    :param revision: returns the running revision's model (``pv_steps_revision``), or ``None``.
    :param user_meta: returns the user metadata mapping (or ``None``).
    :param loader: returns the module loader to use now.
    :param fitconfig: returns the FIT configuration name ("" for none).
    :param publish: ``core.publish``, for ``driver.status`` events.
    """

    def __init__(self, revision: Callable[[], Any],
                 user_meta: Callable[[], Optional[Mapping[str, str]]],
                 loader: Callable[[], Any], fitconfig: Callable[[], str],
                 publish: Optional[Callable[[str, str, dict], Any]] = None):
        self._publish = publish or (lambda *args: None)
        self._revision = revision
        self._user_meta = user_meta
        self._loader = loader
        self._fitconfig = fitconfig
        self._loaded: Dict[str, bool] = {}
        self._lock = threading.Lock()

    # -- reading -------------------------------------------------------------

    def _aliases(self, revision=None) -> Dict[str, Tuple[str, ...]]:
        revision = self._revision() if revision is None else revision
        return revision.driver_aliases(self._fitconfig() or "") if revision is not None else {}

    @staticmethod
    def _references(revision, container: str) -> Tuple[Tuple[str, str], ...]:
        found = revision.containers.get(container) if revision is not None else None
        return found.drivers if found is not None else ()

    def references(self, container: str) -> List[Tuple[str, str]]:
        """``(alias, TYPE)`` the running revision's ``container`` references."""
        return list(self._references(self._revision(), container))

    def status(self, alias: str, aliases: Mapping[str, List[str]]) -> str:
        if alias not in aliases:
            return UNKNOWN
        with self._lock:
            return LOADED if self._loaded.get(alias) else UNLOADED

    def listing(self, container: str) -> list:
        """``GET /drivers`` entries of ``container`` (``[]`` when it has none)."""
        revision = self._revision()
        aliases = self._aliases(revision)
        refs = self._references(revision, container)
        return [{"name": alias, "type": kind, "status": self.status(alias, aliases)} for alias, kind in refs]

    # -- loading ---------------------------------------------------------------

    def load(self, alias: str, aliases: Optional[Mapping[str, List[str]]] = None) -> bool:
        """Load every module of ``alias`` in order; ``True`` if it is loaded
        now or unknown to the BSP (a no-op)."""
        aliases = self._aliases() if aliases is None else aliases
        modules = aliases.get(alias)
        if modules is None:
            log.info("driver_unknown", alias=alias)
            return True
        with self._lock:
            if self._loaded.get(alias):
                return True
            loader = self._loader()
            meta = self._user_meta() or {}
            for text in modules:
                module, args = manifest.split_module(manifest.substitute(text, meta))
                if not module:
                    continue
                if not loader.load(module, args):
                    log.warning("driver_load_failed", alias=alias, module=module, args=args)
                    return False
            self._loaded[alias] = True
        log.info("driver_loaded", alias=alias)
        self._publish("driver.status", alias, {"old": UNLOADED, "new": LOADED})
        return True

    def unload(self, alias: str, aliases: Optional[Mapping[str, List[str]]] = None) -> None:
        """``modprobe -r`` the modules of a loaded ``alias`` in reverse order;
        failures are logged and ignored (the alias counts as unloaded)."""
        aliases = self._aliases() if aliases is None else aliases
        modules = aliases.get(alias)
        with self._lock:
            if modules is None or not self._loaded.get(alias):
                return
            loader = self._loader()
            for text in reversed(modules):
                module = manifest.split_module(text)[0]
                if module and not loader.unload(module):
                    log.warning("driver_unload_failed", alias=alias, module=module)
            self._loaded[alias] = False
        log.info("driver_unloaded", alias=alias)
        self._publish("driver.status", alias, {"old": LOADED, "new": UNLOADED})

    def manual(self, container: str) -> List[str]:
        return [alias for alias, kind in self.references(container) if kind == "MANUAL"]

    def load_manual(self, container: str) -> bool:
        """Load all manual drivers of ``container``; ``False`` if any failed."""
        aliases = self._aliases()
        results = [self.load(alias, aliases) for alias in self.manual(container)]
        return all(results)

    def unload_manual(self, container: str) -> None:
        aliases = self._aliases()
        for alias in reversed(self.manual(container)):
            self.unload(alias, aliases)

    def container_starting(self, container: str, drivers: Sequence[Tuple[str, str]]) -> None:
        """Load the required and optional drivers of a starting container.

        :param drivers: its ``(alias, TYPE)`` references (the revision model's ``drivers``).
        :raises DriverLoadError: a required driver failed (aborts the start).
        """
        wanted = [(alias, kind) for alias, kind in drivers if kind != "MANUAL"]
        if not wanted:
            return  # PERF: most containers load no driver; the BSP is not even read
        aliases = self._aliases()
        for alias, kind in wanted:
            if not self.load(alias, aliases):
                if kind == "REQUIRED":
                    raise DriverLoadError(f"required driver {alias} of {container} failed to load")
                log.warning("optional_driver_failed", container=container, alias=alias)
