"""pvcore's settings, declared in one place.

Each :class:`Setting` has a name, a type, a default, an environment variable
(``PVCORE_<NAME>``) and a description; plugins add their own through the
``pvcore_declare_settings`` hook. Values come from, highest first: the
overrides passed in code (tests, embedding), the environment, the default.
Callables (e.g. ``free_space``) can only be overridden in code: that is how
tests inject faults without monkeypatching.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Optional


class SettingsError(Exception):
    """A setting is unknown, declared twice, or has a value of the wrong type."""


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _free_space(path: str) -> int:
    return shutil.disk_usage(path).free


@dataclass(frozen=True)
class Setting:
    """One setting: ``name``, ``type`` (``str``, ``int``, ``float``, ``bool`` or
    ``callable``), ``default`` and a one-paragraph ``help``."""

    name: str
    type: Any
    default: Any
    help: str

    @property
    def env(self) -> str:
        """The environment variable that sets it."""
        return "PVCORE_" + self.name.upper()

    def parse(self, text: str) -> Any:
        """Convert an environment string to the setting's type."""
        if self.type is bool:
            return _bool(text)
        if self.type is callable:
            raise SettingsError(f"{self.name} can only be set in code")
        return self.type(text)


#: The core's own settings. Paths default to the embedded demo device under ./var/.
CORE_SETTINGS = (
    Setting("storage_dir", str, "var/storage",
            "Pantavisor storage (objects/, trails/, cache/, logs/). The demo device lives in ./var/storage."),
    Setting("run_dir", str, "var/run",
            "Runtime directory: the pv-ctrl socket, process-group records, per-key metadata views."),
    Setting("socket", str, "",
            "Path of the pv-ctrl Unix socket; empty means <run_dir>/pv-ctrl."),
    Setting("log_format", str, "auto",
            "Log renderer: json, console, or auto (console on a tty, JSON otherwise)."),
    Setting("log_level", str, "info", "Minimum level of log events (debug, info, warning, error)."),
    Setting("demo", bool, False,
            "Seed the embedded demo device (revision 0, example containers) when the storage dir is empty."),
    Setting("caller_host_uids", str, "self",
            "Comma-separated effective uids whose processes, outside every container, are the host "
            "(_pv_, privileged); self is the uid pvcore runs as. Anyone unrecognised is unknown."),
    Setting("caller_host_cgroups", str, "",
            "Comma-separated cgroup paths whose processes are the host (/ on a device where Pantavisor "
            "keeps its own processes in the root cgroup)."),
    Setting("cgroups", str, "auto",
            "Containers in cgroups of their own: auto (when pvcore can create cgroups, v1 or v2) or off "
            "(the process-tree fallback, as on a non-root laptop)."),
    Setting("buildinfo", str, "",
            "The build manifest served by GET /buildinfo (text); empty, as in CMake builds, by default."),
    Setting("init_mode", str, "appengine",
            "Pantavisor init mode: embedded, standalone or appengine (a device on a laptop is appengine)."),
    Setting("stop_timeout", float, 5.0,
            "Seconds a supervised process gets between SIGTERM and SIGKILL."),
    Setting("events_buffer", int, 1024,
            "Events kept for replay (GET /_pvcore/events?since=ID); an older since gets a pvcore.gap record."),
    Setting("max_watchers", int, 16,
            "Streams open at once (/_pvcore/events, log follow); the next caller gets 503 with Retry-After."),
    Setting("stream_stall_timeout", float, 10.0,
            "Seconds a stream's client may leave its socket full before it is dropped."),
    Setting("free_space", callable, _free_space,
            "Function(path) -> free bytes of the filesystem holding path; injected by tests to simulate a full disk."),
)


class Settings:
    """Resolved settings; read them as attributes (``settings.storage_dir``)
    or with :meth:`get`."""

    def __init__(self, overrides: Optional[Mapping[str, Any]] = None, env: Optional[Mapping[str, str]] = None):
        self._decls: Dict[str, Setting] = {}
        self._values: Dict[str, Any] = {}
        self._overrides = dict(overrides or {})
        self._env = os.environ if env is None else env
        self.declare(CORE_SETTINGS, owner="pvcore")

    def declare(self, settings: Iterable[Setting], owner: str = "?") -> None:
        """Add declarations (from a plugin) and resolve their values."""
        for setting in settings:
            if setting.name in self._decls:
                raise SettingsError(f"setting {setting.name!r} declared twice (second time by {owner})")
            self._decls[setting.name] = setting
            self._values[setting.name] = self._resolve(setting)

    def _resolve(self, setting: Setting) -> Any:
        if setting.name in self._overrides:
            return self._overrides[setting.name]
        text = self._env.get(setting.env)
        if text is None:
            return setting.default
        try:
            return setting.parse(text)
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"{setting.env}={text!r}: {exc}") from None

    def get(self, name: str) -> Any:
        """Value of setting ``name``; unknown names raise :class:`SettingsError`."""
        try:
            return self._values[name]
        except KeyError:
            raise SettingsError(f"unknown setting {name!r}") from None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.get(name)
        except SettingsError as exc:
            raise AttributeError(str(exc)) from None

    @property
    def socket_path(self) -> str:
        """The pv-ctrl socket path (``socket`` or ``<run_dir>/pv-ctrl``)."""
        return self.get("socket") or os.path.join(self.get("run_dir"), "pv-ctrl")

    def declarations(self) -> Iterable[Setting]:
        """Every declared setting, for documentation and ``/_pvcore``."""
        return list(self._decls.values())
