"""The device metadata Pantavisor writes itself (docs/protocol.md §D10.1, docs/protocol.md §7.11).

Everything is read from ``/proc``, ``/sys`` and the standard library; the
filesystem root is a constructor argument so tests can point it at a fake
tree. Each probe is best effort: a missing source yields no key (or an empty
object), never an error.
"""
from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import socket
import struct
import sys
import time
from typing import Callable, Dict, Iterable, List, Optional

#: Keys refreshed periodically; ``time`` and ``sysinfo`` are boot snapshots
#: (upstream writes them at boot) and only come back when deleted.
BOOT_ONLY = ("time", "sysinfo")

_SIOCGIFADDR = 0x8915
_SI_LOAD_SHIFT = 16


def _dumps(doc) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def pvcore_version() -> str:
    try:
        from importlib.metadata import version

        return version("pvcore")
    except Exception:  # PackageNotFoundError and broken metadata alike
        return "unknown"


class DeviceInfo:
    """Collects the automatic device metadata.

    :param root: filesystem root holding ``proc/`` and ``sys/`` (``/``).
    :param storage_dir: whose filesystem ``storage`` describes.
    :param free_space: ``path -> free bytes`` (``core.settings.free_space``).
    :param reserved_percent: ``() -> int``, the GC reserve in percent.
    """

    def __init__(self, root: str, storage_dir: str, free_space: Callable[[str], int],
                 reserved_percent: Callable[[], int] = lambda: 5):
        self._root = root
        self._storage_dir = storage_dir
        self._free_space = free_space
        self._reserved_percent = reserved_percent

    def _read(self, *parts: str) -> Optional[str]:
        try:
            with open(os.path.join(self._root, *parts), "rb") as fh:
                return fh.read(1 << 20).decode("utf-8", errors="replace")
        except OSError:
            return None

    # -- the keys ---------------------------------------------------------------

    def collect(self) -> Dict[str, str]:
        """Every key the probes find, with its value (strings, JSON text for objects).

        Only pv_metadata's own keys: the running revision, its status, the
        mode and the claim state are their owners' (pv_metadata.facts).
        """
        meta = {
            "pantavisor.arch": self.arch(),
            "pantavisor.version": pvcore_version(),
            "pantahub.online": "0",
            "pantavisor.uname": _dumps(self.uname()),
            "time": _dumps(self.time()),
            "sysinfo": _dumps(self.sysinfo()),
            "storage": _dumps(self.storage()),
            "interfaces": _dumps(self.interfaces()),
        }
        for key, value in (("pantavisor.dtmodel", self.dtmodel()), ("pantavisor.cpumodel", self.cpumodel())):
            if value:
                meta[key] = value
        return meta

    @staticmethod
    def arch() -> str:
        bits = struct.calcsize("P") * 8
        endian = "EL" if sys.byteorder == "little" else "EB"
        return f"{platform.machine() or 'unknown'}/{bits}/{endian}"

    def dtmodel(self) -> str:
        text = self._read("proc", "device-tree", "model") or ""
        return text.replace("\x00", "").strip()

    def cpumodel(self) -> str:
        text = self._read("proc", "cpuinfo") or ""
        fields: Dict[str, str] = {}
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep:
                fields.setdefault(name.strip().lower(), value.strip())
        for name in ("model name", "cpu model", "hardware", "processor"):
            value = fields.get(name, "")
            if value and not value.isdigit():  # x86's "processor: 0" is an index
                return value
        return ""

    @staticmethod
    def uname() -> Dict[str, str]:
        u = os.uname()
        return {"kernel.name": u.sysname, "kernel.release": u.release, "kernel.version": u.version,
                "node.name": u.nodename, "machine": u.machine}

    @staticmethod
    def time(now: Optional[float] = None) -> dict:
        now = time.time() if now is None else now
        offset = time.localtime(now).tm_gmtoff
        return {"timeval": {"tv_sec": int(now), "tv_usec": int((now % 1) * 1_000_000)},
                "timezone": {"tz_minuteswest": -offset // 60, "tz_dsttime": 0}}

    def sysinfo(self) -> dict:
        """The fields of ``sysinfo(2)``, from ``/proc`` (``mem_unit`` 1: bytes)."""
        info: dict = {}
        uptime = (self._read("proc", "uptime") or "").split()
        if uptime:
            info["uptime"] = int(float(uptime[0]))
        loadavg = (self._read("proc", "loadavg") or "").split()
        for index, text in enumerate(loadavg[:3]):
            info[f"loads.{index}"] = int(float(text) * (1 << _SI_LOAD_SHIFT))
        meminfo = self._meminfo()
        for field, source in (("totalram", "MemTotal"), ("freeram", "MemFree"), ("sharedram", "Shmem"),
                              ("bufferram", "Buffers"), ("totalswap", "SwapTotal"), ("freeswap", "SwapFree")):
            if source in meminfo:
                info[field] = meminfo[source]
        if len(loadavg) > 3 and "/" in loadavg[3]:
            info["procs"] = int(loadavg[3].split("/")[1])
        if meminfo:
            info["totalhigh"] = meminfo.get("HighTotal", 0)
            info["freehigh"] = meminfo.get("HighFree", 0)
            info["mem_unit"] = 1
        return info

    def _meminfo(self) -> Dict[str, int]:
        result = {}
        for line in (self._read("proc", "meminfo") or "").splitlines():
            name, _, rest = line.partition(":")
            words = rest.split()
            if words and words[0].isdigit():
                scale = 1024 if len(words) > 1 and words[1].lower() == "kb" else 1
                result[name.strip()] = int(words[0]) * scale
        return result

    def storage(self) -> dict:
        """``{"total","free","reserved","real_free"}`` of the storage filesystem."""
        try:
            total = shutil.disk_usage(self._storage_dir).total
            free = int(self._free_space(self._storage_dir))
        except OSError:
            return {}
        reserved = total * max(int(self._reserved_percent()), 0) // 100
        return {"total": total, "free": free, "reserved": reserved, "real_free": max(free - reserved, 0)}

    def interfaces(self) -> Dict[str, List[str]]:
        """``{"<if>.mac": [..], "<if>.ipv4": [..], "<if>.ipv6": [..]}``, loopback left out."""
        try:
            names = sorted(os.listdir(os.path.join(self._root, "sys", "class", "net")))
        except OSError:
            return {}
        ipv6 = self._ipv6_addresses()
        result: Dict[str, List[str]] = {}
        for name in names:
            if name == "lo":
                continue
            ipv4 = _ipv4_address(name) if self._root == "/" else None
            if ipv4:
                result[name + ".ipv4"] = [ipv4]
            if ipv6.get(name):
                result[name + ".ipv6"] = ipv6[name]
            mac = (self._read("sys", "class", "net", name, "address") or "").strip()
            if mac:
                result[name + ".mac"] = [mac]
        return result

    def _ipv6_addresses(self) -> Dict[str, List[str]]:
        result: Dict[str, List[str]] = {}
        for line in (self._read("proc", "net", "if_inet6") or "").splitlines():
            words = line.split()
            if len(words) == 6 and len(words[0]) == 32:
                text = ":".join(words[0][i:i + 4] for i in range(0, 32, 4))
                try:
                    packed = socket.inet_pton(socket.AF_INET6, text)
                    result.setdefault(words[5], []).append(socket.inet_ntop(socket.AF_INET6, packed))
                except OSError:
                    pass
        return result


def _ipv4_address(name: str) -> Optional[str]:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            data = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        return socket.inet_ntoa(data[20:24])
    except OSError:
        return None


def refreshable(keys: Iterable[str], present: Iterable[str]) -> List[str]:
    """Which automatic keys a periodic refresh writes: all but the boot
    snapshots, which are only restored when missing."""
    present = set(present)
    return [key for key in keys if key not in BOOT_ONLY or key not in present]
