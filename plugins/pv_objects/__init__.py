"""pv_objects: the content-addressed object store.

Routes: ``GET /objects``, ``GET|PUT /objects/{sha}``. The contract other
plugins use (find objects, collect the unreferenced ones given a keep-set) is
in :mod:`pv_objects.hookspecs`; pv_objects depends on no other plugin.
"""
from __future__ import annotations

import os

import structlog

from pvcore import hookimpl
from pvcore.ownership import Owns
from pvcore.app import StashKey
from pvcore.settings import Setting

from pv_objects.resources import ObjectItem, ObjectList
from pv_objects.store import ObjectStore, valid_sha

log = structlog.get_logger(__name__)

STORE: StashKey[ObjectStore] = StashKey()


@hookimpl
def pvcore_declare_ownership():
    return Owns(
        paths={"<storage>/objects/": "content-addressed objects, one file per sha256; upload temp files "
                                     "(`.<sha>.*.tmp`) while they stream"},
        events={"object.stored": "an object was stored (subject: its sha256; data: size)",
                "object.collected": "garbage collection deleted an object (subject: its sha256)"},
        listens=(),
    )


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
        publish=core.publish,
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
    ]


@hookimpl
def pvcore_addhooks(pluginmanager):
    from pv_objects import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@hookimpl
def pv_objects_object_path(core, sha):
    return core.stash[STORE].find(sha)


@hookimpl
def pv_objects_missing(core, shas):
    store = core.stash[STORE]
    return [sha for sha in shas if store.find(sha) is None]


@hookimpl
def pv_objects_collect(core, keep):
    return core.stash[STORE].collect(set(keep), core.settings.get("storage_gc_grace"))


@hookimpl
def pv_objects_store(core, sha, stream, length):
    if not valid_sha(sha):
        raise ValueError(f"not an object name (a sha256 in lowercase hex): {sha!r}")
    return core.stash[STORE].put(sha, stream, length)
