"""pvcore-wakelocks: ``GET /wakelocks`` and the wakelocks behind it.

A complete third-party pvcore plugin in one module: it declares a setting,
builds its state at start-up, serves a route, follows device activity through
hooks, publishes its own device events (``wakelock.taken`` and
``wakelock.released``, subject the lock name) and releases everything at
shutdown. It imports only pvcore's public
API (``hookimpl``, ``pvcore.app.StashKey``, ``pvcore.settings.Setting``,
``pvcore.body.dumps``, ``pvcore.errors``).
"""
from __future__ import annotations

import os

import falcon

from pvcore import hookimpl
from pvcore.app import StashKey
from pvcore.body import dumps
from pvcore.errors import PvError
from pvcore.ownership import Owns
from pvcore.settings import Setting

from pvcore_wakelocks.locks import Wakelocks

__version__ = "0.1.0"

WAKELOCKS = StashKey()


@hookimpl
def pvcore_declare_ownership():
    return Owns(
        events={"wakelock.taken": "a kernel wakelock was taken (subject: the lock)",
                "wakelock.released": "a kernel wakelock was released (subject: the lock)"},
        listens=("revision.status",),
    )
_MODES = {0: "disabled", 1: "locks", 2: "managed"}
#: Activities pvcore reports (``pvcore_activity``) → the lock each holds.
ACTIVITY_LOCKS = {"update": "update", "devmeta": "devmeta", "usrmeta": "usrmeta", "shutdown": "shutdown",
                  "boot": "boot"}


@hookimpl
def pvcore_declare_settings():
    return [
        Setting("wakelocks_sysfs_dir", str, "/sys/power",
                "Directory of the kernel's wake_lock/wake_unlock/autosleep files; the demo device uses plain "
                "files under ./var, which then record every write.", demo="var/sys/power"),
    ]


@hookimpl
def pvcore_startup(core):
    sysfs = core.settings.get("wakelocks_sysfs_dir")
    if not sysfs.startswith("/sys/"):
        # A file-backed tree (demo device, tests): make sure it exists.
        os.makedirs(sysfs, exist_ok=True)
        for name in ("wake_lock", "wake_unlock"):
            open(os.path.join(sysfs, name), "a").close()
        autosleep = os.path.join(sysfs, "autosleep")
        if not os.path.exists(autosleep):
            with open(autosleep, "w") as fh:
                fh.write("off\n")
    core.stash[WAKELOCKS] = Wakelocks(sysfs)


def _mode(core) -> str:
    value = core.call("pv_config_get", key="PV_POWER_MODE")
    if value is None:
        return "locks"  # upstream's default power mode
    if isinstance(value, str):
        return value if value in _MODES.values() else "unknown"
    return _MODES.get(value, "unknown")


class WakelocksResource:
    """``GET /wakelocks``; mgmt only."""

    def __init__(self, core):
        self._core = core

    def on_get(self, req, resp):
        try:
            doc = self._core.stash[WAKELOCKS].snapshot(_mode(self._core))
        except Exception:
            raise PvError("couldn't get wakelock state", 500) from None
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(doc)


@hookimpl
def pvcore_routes(core):
    return [("/wakelocks", WakelocksResource(core))]


@hookimpl
def pvcore_activity(core, name, active):
    lock = ACTIVITY_LOCKS.get(name)
    if lock is None:
        return
    if active:
        take(core, lock)
    else:
        let_go(core, lock)


def take(core, lock: str) -> None:
    """Hold ``lock``; publish ``wakelock.taken`` when the kernel lock is taken."""
    if core.stash[WAKELOCKS].acquire(lock):
        core.publish("wakelock.taken", lock, {})


def let_go(core, lock: str) -> None:
    """Drop a hold of ``lock``; publish ``wakelock.released`` when the kernel lock goes."""
    if core.stash[WAKELOCKS].release(lock):
        core.publish("wakelock.released", lock, {})


class _BootLock:
    """Holds ``boot`` from the worker's start until the revision is READY."""

    name = "wakelocks.boot"
    priority = 0  # before any other service, so boot covers them all

    def __init__(self, core):
        self._core = core

    def start(self):
        take(self._core, "boot")

    def stop(self):
        for lock in self._core.stash[WAKELOCKS].release_all():
            self._core.publish("wakelock.released", lock, {})


@hookimpl
def pvcore_services(core):
    return [_BootLock(core)]


@hookimpl
def pvcore_event(core, event):
    if event.type != "revision.status":
        return
    if event.data.get("status") == "READY" and core.stash[WAKELOCKS].held("boot"):
        let_go(core, "boot")
