"""User and device metadata: ``/user-meta*``, ``/device-meta*`` (docs/protocol.md §7.10, §7.11).

Two ordered stores persisted one file per key under ``<storage>/cache/meta``
and ``<storage>/cache/devmeta`` (see :mod:`pv_metadata.store`), loaded at
start-up so values survive a restart. Device metadata is populated when the
services start and refreshed periodically (:mod:`pv_metadata.devinfo`);
events keep ``pantavisor.status``, ``pantavisor.revision`` and
``pantavisor.mode`` current. The contract other plugins use is in
:mod:`pv_metadata.hookspecs`; every change is published as a ``meta.user`` /
``meta.device`` event. ``UPDATE_METADATA`` commands are carried out here.
"""
from __future__ import annotations

import json
import os
import time

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

#: Device metadata recorded for upstream (the Hub) by UPDATE_METADATA.
PENDING_DEVMETA = os.path.join("cache", "pending-devmeta.jsonl")

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
    value = core.call("pv_config_get", key=key)
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
        self._meta.announce_user()
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
def pvcore_addhooks(pluginmanager):
    from pv_metadata import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def pv_metadata_user(core):
    return core.stash[META].stores[USER.name].snapshot()


@hookimpl
def pv_metadata_set_device(core, key, value):
    if not valid_key(key):
        return False
    core.stash[META].set(DEVICE.name, key, None if value is None else str(value))
    return True


@hookimpl
def pv_metadata_views(core, container):
    meta = core.stash[META]
    return {meta.kinds[kind].view: store.view_for(container) for kind, store in meta.stores.items()} \
        if container is None or valid_key(container) and "." not in container else None


@hookimpl
def pvcore_event(core, event):
    meta = core.stash.get(META)
    if meta is None:
        return
    if event.type == "revision.status":
        meta.set(DEVICE.name, "pantavisor.status", str(event.data.get("status")))
    elif event.type == "revision.running":
        meta.set(DEVICE.name, "pantavisor.revision", event.subject)
    elif event.type == "commands.mode":
        meta.set(DEVICE.name, "pantavisor.mode", event.subject)
    elif event.type == "commands.unclaimed":
        meta.set(DEVICE.name, "pantahub.claimed", None)


@hookimpl(optionalhook=True)
def pv_commands_run(core, op, payload):
    if op != "UPDATE_METADATA":
        return None
    doc = json.loads(payload)
    key, value = next(iter(doc.items()))
    if not isinstance(value, str):
        value = json.dumps(value, separators=(",", ":"))
    # Queued for upstream first, so whoever sees the new device meta can
    # rely on it being recorded for the push too.
    _queue_upstream(core, key, value)
    stored = pv_metadata_set_device(core, key, value)
    log.info("device_meta_queued", key=key, stored=bool(stored))
    return True


def _queue_upstream(core, key: str, value: str) -> None:
    path = os.path.join(core.settings.storage_dir, PENDING_DEVMETA)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    line = json.dumps({"key": key, "value": value, "time": int(time.time())}, separators=(",", ":"))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
