"""The metadata plugin's state: the user and device stores plus change events."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional

import structlog

from pv_metadata.devinfo import DeviceInfo, refreshable
from pv_metadata.store import MetaStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Kind:
    """What differs between the two stores (docs/protocol.md §7.10 / §7.11)."""

    name: str  # "user" | "device": events are meta.user / meta.device
    activity: str  # ``pvcore_activity`` name
    persist: str  # under <storage>/cache/
    view: str  # under <run>/
    bad_put: str
    missing: str


USER = Kind("user", "usrmeta", "meta", "user-meta",
            "Cannot add or update user meta", "User meta does not exist")
DEVICE = Kind("device", "devmeta", "devmeta", "device-meta",
              "Cannot add or update device meta", "Device meta does not exist")


class Metadata:
    """Both stores; every write goes through :meth:`set` so hooks fire.

    :param core: for ``core.hook`` (events) and the settings.
    :param devinfo: the automatic device metadata source.
    """

    def __init__(self, core, devinfo: DeviceInfo, own_keys=None):
        self._core = core
        self.devinfo = devinfo
        #: the device keys the refresh may write (pv_metadata's own)
        self.own_keys = own_keys
        cache = os.path.join(core.settings.storage_dir, "cache")
        own = core.data_dir("pv_metadata")
        self.stores: Dict[str, MetaStore] = {
            kind.name: MetaStore(os.path.join(cache, kind.persist), os.path.join(core.settings.run_dir, kind.view),
                                 own_dir=own)
            for kind in (USER, DEVICE)
        }
        self.kinds = {USER.name: USER, DEVICE.name: DEVICE}

    def load(self) -> None:
        for store in self.stores.values():
            store.load()

    def announce_user(self) -> None:
        """Publish every user key as a ``meta.user`` event (when the worker starts).

        The events tell listeners (the configuration's metadata level) the
        values present at boot without their asking (docs/architecture.md §4).
        """
        for key, value in self.stores[USER.name].snapshot().items():
            self._core.publish(f"meta.{USER.name}", key, {"value": value})

    def set(self, kind: str, key: str, value: Optional[str], defer: bool = False) -> bool:
        """Store (``value``) or delete (``None``) ``key``; ``True`` if anything changed.

        ``pvcore_activity`` brackets the write; a ``meta.<kind>`` event is
        published after a real change. ``defer``: a value the disk cannot take
        now is kept in memory and written later (:meth:`MetaStore.put`); for
        what pvcore writes on an owner's behalf, never for a client's PUT.
        """
        store = self.stores[kind]
        hook = self._core.hook
        if store.get(key) == value:
            return False
        # NOTE: the activity brackets the write from outside the write lock:
        # its listeners publish events, and an event listener may be waiting
        # for this lock (metadata follows revision events) — never hold both.
        hook.pvcore_activity(core=self._core, name=self.kinds[kind].activity, active=True)
        try:
            with store.write_lock:
                changed = store.get(key) != value and (
                    store.put(key, value, defer) if value is not None else store.delete(key))
        finally:
            hook.pvcore_activity(core=self._core, name=self.kinds[kind].activity, active=False)
        if changed:
            # NOTE: device keys change on every refresh (storage, interfaces): debug only.
            (log.info if kind == USER.name else log.debug)("meta_changed", kind=kind, key=key,
                                                           deleted=value is None)
            # NOTE: published outside the write lock: a listener may write
            # metadata itself (events are delivered under their own lock).
            self._core.publish(f"meta.{kind}", key, {"value": value})
        return changed

    # -- automatic device metadata ----------------------------------------------

    def refresh_device(self, boot: bool = False) -> None:
        """Write the automatic device keys (all of them at boot)."""
        values = self.devinfo.collect()
        if self.own_keys is not None:  # never another owner's key (docs/architecture.md §2)
            values = {key: value for key, value in values.items() if key in self.own_keys}
        store = self.stores[DEVICE.name]
        keys = list(values) if boot else refreshable(values, store.snapshot())
        for key in keys:
            self.set(DEVICE.name, key, values[key], defer=True)

    def flush(self) -> bool:
        """Retry the writes a full disk held back, in both stores; ``True`` when none is left."""
        return all([store.flush() for store in self.stores.values()])
