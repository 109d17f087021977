"""User and device metadata: ``/user-meta*``, ``/device-meta*`` (contract §7.10, §7.11).

Two ordered stores persisted one file per key under ``<storage>/cache/meta``
and ``<storage>/cache/devmeta`` (see :mod:`pv_metadata.store`), loaded at
start-up so values survive a restart. Device metadata is populated when the
services start and refreshed periodically (:mod:`pv_metadata.devinfo`);
revision events keep ``pantavisor.status`` and ``pantavisor.revision``
current. Other plugins read user metadata and write device metadata through
``pvcore_user_meta`` / ``pvcore_set_device_meta``; every change is announced
with ``pvcore_meta_changed``.
"""
from __future__ import annotations

import structlog

from pvcore import hookimpl
from pvcore.app import StashKey
from pvcore.services import LoopService, Service
from pvcore.settings import Setting

from pv_metadata.devinfo import DeviceInfo
from pv_metadata.resources import MetaItem, MetaList
from pv_metadata.state import DEVICE, USER, Metadata
from pv_metadata.store import valid_key

log = structlog.get_logger(__name__)

META = StashKey()

_DEFAULT_REFRESH = 10.0


@hookimpl
def pvcore_declare_settings():
    return [
        Setting("devmeta_refresh", float, 0.0,
                "Seconds between refreshes of the automatic device metadata; 0 follows the "
                "PH_METADATA_DEVMETA_INTERVAL configuration entry (10 s by default)."),
        Setting("devinfo_root", str, "/",
                "Filesystem root the device metadata probes read proc/ and sys/ from."),
    ]


def _config(core, key, default):
    value = core.hook.pvcore_config_get(core=core, key=key)
    return default if value is None else value


@hookimpl
def pvcore_startup(core):
    devinfo = DeviceInfo(
        core.settings.get("devinfo_root"), core.settings.storage_dir, core.settings.free_space,
        reserved_percent=lambda: _config(core, "PV_STORAGE_GC_RESERVED", 5),
    )
    meta = Metadata(core, devinfo)
    meta.load()
    core.stash[META] = meta


@hookimpl
def pvcore_routes(core):
    meta = core.stash[META]
    return [
        ("/user-meta", MetaList(meta, USER)),
        ("/user-meta/{key}", MetaItem(meta, USER)),
        ("/device-meta", MetaList(meta, DEVICE)),
        ("/device-meta/{key}", MetaItem(meta, DEVICE)),
    ]


class DeviceMetaRefresh(Service):
    """Writes the automatic device metadata at start, then refreshes it."""

    name = "devmeta-refresh"
    priority = 20

    def __init__(self, core, meta: Metadata):
        self._core = core
        self._meta = meta
        self._loop = LoopService(self.name, self._tick, interval=self._interval())
        self._first = True

    def _interval(self) -> float:
        configured = self._core.settings.get("devmeta_refresh")
        if configured > 0:
            return configured
        return float(_config(self._core, "PH_METADATA_DEVMETA_INTERVAL", _DEFAULT_REFRESH)) or _DEFAULT_REFRESH

    def _tick(self) -> None:
        self._loop.interval = self._interval()
        if self._first:  # the loop ticks at once; start() has just written everything
            self._first = False
            return
        self._meta.refresh_device()

    def start(self) -> None:
        try:
            self._meta.refresh_device(boot=True)
        except OSError:  # a full disk must not keep the worker from booting
            log.exception("devmeta_refresh_failed")
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()


@hookimpl
def pvcore_services(core):
    return [DeviceMetaRefresh(core, core.stash[META])]


@hookimpl
def pvcore_user_meta(core):
    return core.stash[META].stores[USER.name].snapshot()


@hookimpl
def pvcore_set_device_meta(core, key, value):
    if not valid_key(key):
        return False
    core.stash[META].set(DEVICE.name, key, None if value is None else str(value))
    return True


@hookimpl
def pvcore_revision_status_changed(core, rev, status):
    core.stash[META].set(DEVICE.name, "pantavisor.status", str(status))


@hookimpl
def pvcore_revision_changed(core, old, new, ok):
    running = core.running_revision() or (new if ok else old)
    if running:
        core.stash[META].set(DEVICE.name, "pantavisor.revision", running)
