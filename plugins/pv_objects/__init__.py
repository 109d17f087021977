"""pv_objects: the content-addressed object store and ``POST /storage/gc``.

Routes: ``GET /objects``, ``GET|PUT /objects/{sha}``, ``POST /storage/gc``.
Hooks: ``pvcore_object_path`` (a complete object's path) and
``pvcore_garbage_collect`` (objects no ``pvcore_objects_in_use`` answer names
and older than the grace period, plus stale upload temp files).
"""
from __future__ import annotations

import os

import structlog

from pvcore import hookimpl
from pvcore.app import StashKey
from pvcore.settings import Setting

from pv_objects.resources import GarbageCollect, ObjectItem, ObjectList
from pv_objects.store import ObjectStore

log = structlog.get_logger(__name__)

STORE: StashKey[ObjectStore] = StashKey()


@hookimpl
def pvcore_declare_settings():
    return [
        Setting("storage_gc_grace", float, 600.0,
                "Seconds an unreferenced object (or upload temp file) is kept after it was written or "
                "re-uploaded before garbage collection may delete it; protects the objects of a revision "
                "being uploaded (upstream's PV_STORAGE_GC_THRESHOLD_DEFERTIME)."),
        Setting("storage_reserved_percent", float, 5.0,
                "Percent of the storage partition uploads may not use: an object upload needs "
                "free - total * percent / 100 bytes (upstream's PV_STORAGE_GC_RESERVED)."),
    ]


@hookimpl
def pvcore_startup(core):
    settings = core.settings
    store = ObjectStore(
        os.path.join(settings.storage_dir, "objects"),
        settings.free_space,
        settings.get("storage_reserved_percent"),
    )
    os.makedirs(store.directory, exist_ok=True)
    store.sweep_dead_uploads()
    core.stash[STORE] = store


@hookimpl
def pvcore_routes(core):
    store = core.stash[STORE]
    return [
        ("/objects", ObjectList(store)),
        ("/objects/{sha}", ObjectItem(store)),
        ("/storage/gc", GarbageCollect(core)),
    ]


@hookimpl
def pvcore_object_path(core, sha):
    return core.stash[STORE].find(sha)


@hookimpl
def pvcore_garbage_collect(core):
    if not core.hook.pvcore_objects_in_use.get_hookimpls():
        # NOTE: with nobody able to say what is referenced, deleting would be a guess.
        log.warning("objects_gc_skipped", reason="no pvcore_objects_in_use implementation")
        return 0
    in_use = set()
    for answer in core.hook.pvcore_objects_in_use(core=core):
        in_use.update(answer or ())
    return core.stash[STORE].collect(in_use, core.settings.get("storage_gc_grace"))
