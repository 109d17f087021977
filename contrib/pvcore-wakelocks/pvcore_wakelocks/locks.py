"""Reference-counted wakelocks over the kernel's ``wake_lock`` interface."""
from __future__ import annotations

import os
import threading
from typing import Dict

import structlog

log = structlog.get_logger(__name__)

#: The lock names GET /wakelocks reports, in the contract's order.
NAMES = ("boot", "update", "update_check", "devmeta", "usrmeta", "shutdown", "debug_shell", "poll")
PREFIX = "pvcore-"


class Wakelocks:
    """Takes and releases wakelocks; nested holds of one name count up.

    :param sysfs_dir: the directory with ``wake_lock``, ``wake_unlock`` and
        ``autosleep`` (``/sys/power``, or a plain directory on the demo device).
    """

    def __init__(self, sysfs_dir: str):
        self.sysfs_dir = sysfs_dir
        self._holds: Dict[str, int] = {name: 0 for name in NAMES}
        self._lock = threading.Lock()
        self.degraded = False

    def acquire(self, name: str) -> bool:
        """Hold ``name``; the kernel lock is taken on the first hold.

        :return: ``True`` when this hold took the kernel lock.
        """
        with self._lock:
            self._holds[name] = self._holds.get(name, 0) + 1
            if self._holds[name] == 1:
                self._write("wake_lock", name)
                return True
        return False

    def release(self, name: str) -> bool:
        """Drop one hold of ``name``; the kernel lock goes with the last.

        :return: ``True`` when this release let the kernel lock go.
        """
        with self._lock:
            count = self._holds.get(name, 0)
            if count == 0:
                return False
            self._holds[name] = count - 1
            if count == 1:
                self._write("wake_unlock", name)
                return True
        return False

    def release_all(self) -> list:
        """Release everything (shutdown of the plugin); return the names let go."""
        with self._lock:
            held = [name for name, count in self._holds.items() if count]
            for name in held:
                self._holds[name] = 0
                self._write("wake_unlock", name)
        return held

    def held(self, name: str) -> bool:
        return self._holds.get(name, 0) > 0

    def _write(self, interface: str, name: str) -> None:
        # NOTE: append mode is harmless on sysfs and makes the demo device's
        # plain files a record of every write.
        try:
            with open(os.path.join(self.sysfs_dir, interface), "a") as fh:
                fh.write(PREFIX + name + "\n")
        except OSError as exc:
            self.degraded = True
            log.warning("wakelock_write_failed", interface=interface, lock=name, error=str(exc))

    def autosleep(self) -> bool:
        """Whether the kernel autosleep is on (anything but ``off``/empty)."""
        try:
            with open(os.path.join(self.sysfs_dir, "autosleep")) as fh:
                value = fh.read().strip()
        except OSError:
            return False
        return value not in ("", "off")

    def snapshot(self, mode: str) -> dict:
        """The ``GET /wakelocks`` object (docs/protocol.md §7.16)."""
        with self._lock:
            held = {name: self._holds.get(name, 0) > 0 for name in NAMES}
        return {
            "mode": mode,
            "count": sum(held.values()),
            "degraded": self.degraded,
            "autosleep": self.autosleep(),
            "settling": False,
            "polling": False,
            "run_window": False,
            "held": held,
        }
