"""User and device metadata: ``/user-meta*``, ``/device-meta*`` (docs/protocol.md §7.10, §7.11).

Two ordered stores persisted one file per key under ``<storage>/cache/meta``
and ``<storage>/cache/devmeta`` (see :mod:`pv_metadata.store`), loaded at
start-up so values survive a restart. pv_metadata's own device keys
(:data:`OWN_DEVICE_KEYS`) are written when the services start and refreshed
periodically (:mod:`pv_metadata.devinfo`); keys other plugins own
(``pantavisor.revision``, ``pantavisor.status``, ``pantavisor.mode``,
``pantahub.claimed``) are written from the events their owners declared
(:mod:`pv_metadata.facts`), never by the refresh. The contract other plugins use is in
:mod:`pv_metadata.hookspecs`; every change is published as a ``meta.user`` /
``meta.device`` event. ``UPDATE_METADATA`` commands are carried out here.
"""
from __future__ import annotations

import json
import os
import time

import structlog

from pvcore import hookimpl
from pvcore.ownership import Owns
from pvcore.app import StashKey
from pvcore.services import LoopService, Service
from pvcore.settings import Setting

from pv_metadata.devinfo import DeviceInfo
from pv_metadata.facts import FactWriter
from pv_metadata.resources import MetaItem, MetaList
from pv_metadata.state import DEVICE, USER, Metadata
from pv_metadata.store import valid_key

log = structlog.get_logger(__name__)

META = StashKey()
FACTS: StashKey[FactWriter] = StashKey()


#: The device-meta keys pv_metadata's probes write (pv_metadata.devinfo).
OWN_DEVICE_KEYS = {
    "pantavisor.arch": "the CPU architecture", "pantavisor.version": "pvcore's version",
    "pantahub.online": "0: there is no Hub here", "pantavisor.uname": "uname fields (JSON)",
    "pantavisor.dtmodel": "the device-tree model", "pantavisor.cpumodel": "the CPU model",
    "time": "the device's clock (JSON)", "sysinfo": "memory and uptime (JSON)",
    "storage": "the storage partition's size and free space (JSON)",
    "interfaces": "network interfaces and their addresses (JSON)",
}


@hookimpl
def pvcore_declare_ownership():
    return Owns(
        paths={"<storage>/cache/meta/": "user metadata, one file per key (upstream's layout)",
               "<storage>/cache/devmeta/": "device metadata, one file per key (upstream's layout)",
               "<run>/user-meta/": "per-key view of user metadata for containers",
               "<run>/device-meta/": "per-key view of device metadata for containers",
               "<run>/user-meta.<prefix>/": "view of dotted user-meta keys `<prefix>.<rest>` as `<rest>`",
               "<run>/device-meta.<prefix>/": "view of dotted device-meta keys `<prefix>.<rest>` as `<rest>`"},
        device_meta=OWN_DEVICE_KEYS,
        events={"meta.user": "a user-meta key changed (subject: key; data: value, null when deleted)",
                "meta.device": "a device-meta key changed (subject: key; data: value, null when deleted)"},
        listens=_fact_events,
    )


def _fact_events(registry):
    """The events carrying device-meta keys other plugins own (their owners publish them)."""
    return sorted({fact.event for _owner, fact in registry.meta_facts().values()})

#: Device metadata recorded for upstream (the Hub) by UPDATE_METADATA.
#: (In pv_metadata's ``core.data_dir``; ``<storage>/cache/`` before release 0.2.)
PENDING_DEVMETA = "pending-devmeta.jsonl"
LEGACY_PENDING_DEVMETA = os.path.join("cache", "pending-devmeta.jsonl")

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
    legacy = os.path.join(core.settings.storage_dir, LEGACY_PENDING_DEVMETA)
    if os.path.exists(legacy):  # an earlier release's queue: keep it (docs/architecture.md §2)
        os.replace(legacy, os.path.join(core.data_dir("pv_metadata"), PENDING_DEVMETA))
    meta = Metadata(core, devinfo, own_keys=set(OWN_DEVICE_KEYS))
    meta.load()
    core.stash[META] = meta
    # NOTE: deferred: an owner's fact is the device's current state even when
    # the disk is full; its file catches up later (docs/protocol.md §7.11).
    core.stash[FACTS] = FactWriter(core, lambda key, value: meta.set(DEVICE.name, key, value, defer=True))


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
        # Writes a full disk held back are retried here too, not only when
        # another key is written (docs/protocol.md §7.11).
        self._meta.flush()
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
        self._meta.flush()  # a last try: what is still held back is lost with the worker


@hookimpl
def pvcore_services(core):
    return [core.stash[FACTS], DeviceMetaRefresh(core, core.stash[META])]


@hookimpl
def pvcore_addhooks(pluginmanager):
    from pv_metadata import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def pv_metadata_user(core):
    return core.stash[META].stores[USER.name].snapshot()


def _set_device(core, key, value) -> bool:
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
    # Only the events carrying keys other plugins own (see _fact_events).
    facts = core.stash.get(FACTS)
    if facts is not None:
        facts.heard(event)


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
    stored = _set_device(core, key, value)
    log.info("device_meta_queued", key=key, stored=bool(stored))
    return True


def _queue_upstream(core, key: str, value: str) -> None:
    path = os.path.join(core.data_dir("pv_metadata"), PENDING_DEVMETA)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    line = json.dumps({"key": key, "value": value, "time": int(time.time())}, separators=(",", ":"))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
