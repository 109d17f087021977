"""pvcore's settings, declared in one place.

Each :class:`Setting` has a name, a type, a default, an environment variable
(``PVCORE_<NAME>``) and a description; plugins add their own through the
``pvcore_declare_settings`` hook. Values come from, highest first: the
overrides passed in code (tests, embedding), the environment, the settings
file named by ``PVCORE_SETTINGS_FILE`` (``name = value`` lines), the demo
device's value (only with ``PVCORE_DEMO=1``), the default.

Defaults are what a device needs — upstream's value where upstream has one,
absolute paths only (docs/deploy.md, "Settings to review"); a laptop demo
gets its own values (``./var/…``, the ``process`` runtime, a pretend power
backend) from :attr:`Setting.demo`, shown with source ``demo``.
Callables (e.g. ``free_space``) can only be overridden in code: that is how
tests inject faults without monkeypatching. :meth:`Settings.describe` says
where each value came from (``GET /_pvcore/settings``, ``pvcontrol settings``).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

#: Environment variable naming the settings file (it cannot be a setting itself).
SETTINGS_FILE_ENV = "PVCORE_SETTINGS_FILE"
#: How secret values are shown by :meth:`Settings.describe`.
MASK = "********"
#: :attr:`Setting.demo` of a setting the demo device leaves at its default.
NO_DEMO = object()


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
    ``callable``), ``default`` and a one-paragraph ``help``. A ``secret``
    setting (a token, a password) is masked wherever settings are listed.
    ``demo`` is the value the embedded demo device uses instead of the
    default (``PVCORE_DEMO=1``): the default is a device's, the demo's a
    laptop's."""

    name: str
    type: Any
    default: Any
    help: str
    secret: bool = False
    demo: Any = NO_DEMO

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


#: The core's own settings. ``demo`` comes first: the others' values depend on it.
CORE_SETTINGS = (
    Setting("demo", bool, False,
            "The embedded demo device: settings take their demo values (./var/, the process runtime, a pretend "
            "power backend; source 'demo') and, with demo_seed, its factory revision is seeded when the "
            "storage dir is empty. make run sets it; a device never does."),
    Setting("demo_seed", bool, True,
            "With demo on, seed the demo device's factory revision when the storage dir is empty."),
    Setting("storage_dir", str, "/storage",
            "Pantavisor storage (objects/, trails/, logs/, disks/, plugin data); upstream's /storage.",
            demo="var/storage"),
    Setting("run_dir", str, "/run/pantavisor/pv",
            "Runtime directory: the pv-ctrl socket, process-group records, per-key metadata views "
            "(upstream's PV_SYSTEM_RUNDIR).", demo="var/run"),
    Setting("socket", str, "",
            "Path of the pv-ctrl Unix socket; empty means <run_dir>/pv-ctrl."),
    Setting("log_format", str, "auto",
            "Log renderer: json, console, or auto (console on a tty, JSON otherwise)."),
    Setting("log_level", str, "info", "Minimum level of log events (debug, info, warning, error)."),
    Setting("caller_host_uids", str, "self",
            "Comma-separated effective uids whose processes, outside every container, are the host "
            "(_pv_, privileged); self is the uid pvcore runs as. Anyone unrecognised is unknown."),
    Setting("caller_host_cgroups", str, "",
            "Comma-separated cgroup paths whose processes are the host (/ on a device where Pantavisor "
            "keeps its own processes in the root cgroup)."),
    Setting("cgroups", str, "auto",
            "Containers in cgroups of their own: auto (when pvcore can create cgroups, v1 or v2) or off "
            "(the process-tree fallback, as on a non-root laptop)."),
    Setting("header_timeout", float, 10.0,
            "Seconds a connection has to deliver a request head (and a small body) before it is closed unanswered."),
    Setting("io_timeout", float, 10.0,
            "Seconds a request being served may wait for its peer to send or read more before it is ended."),
    Setting("caller_threads", int, 4,
            "Requests one caller (a container, the host, the unknown) may have in gunicorn's threads at once; "
            "its others wait, holding no thread."),
    Setting("caller_connections", int, 128,
            "Connections one caller may hold open at once; more are closed at accept."),
    Setting("worker_nice", int, -10,
            "Scheduling priority (nice) the worker takes when it may (root): containers run at 0, so one busy "
            "in a loop (connecting, forking) cannot out-run the control plane. 0: leave it."),
    Setting("caller_connect_rate", int, 500,
            "New connections one caller may open per second (and in one burst); more are closed at accept, "
            "before the caller is identified again, so a connect flood leaves the listen backlog to others. 0: no limit."),
    Setting("buildinfo", str, "",
            "The build manifest served by GET /buildinfo (text); empty, as in CMake builds, by default."),
    Setting("init_mode", str, "appengine",
            "Pantavisor init mode: embedded, standalone or appengine (a device on a laptop is appengine)."),
    Setting("stop_timeout", float, 5.0,
            "Seconds a supervised process gets between SIGTERM and SIGKILL."),
    Setting("events_buffer", int, 1024,
            "Events kept for replay (GET /_pvcore/events?since=ID); an older since gets a pvcore.gap record."),
    Setting("max_watchers", int, 16,
            "Streams open at once (/_pvcore/events, log follow; the pv-xconnect daemon holds one); "
            "the next caller gets 503 with Retry-After."),
    Setting("stream_stall_timeout", float, 10.0,
            "Seconds a stream's client may leave its socket full before it is dropped."),
    Setting("threads", int, 16,
            "gthread threads serving requests in the one worker (read by gunicorn when it starts); at most "
            "caller_threads of them per caller, so callers stuck on slow peers leave the others threads."),
    Setting("plugins", str, "",
            "Comma-separated entry-point plugins to load, and no others; empty: every installed one. The test "
            "suite names its set here, so what else is installed never changes its results."),
    Setting("disable_plugins", str, "",
            "Comma-separated plugin names to leave out; their routes answer unknown endpoint."),
    Setting("trace_hooks", bool, False,
            "Log every hook call (at debug level: set log_level to debug to see them)."),
    Setting("log_dir_maxsize", int, 16 << 20,
            "Bytes <storage>/logs may hold (upstream's PV_LOG_DIR_MAXSIZE); past 90 % of it the oldest logs of "
            "what no longer runs are removed first, until it is under the low watermark; 0: no budget."),
    Setting("log_hysteresis_factor", int, 4,
            "The low watermark of log cleanup is log_dir_maxsize - log_dir_maxsize / this (PV_LOG_HYSTERESIS_FACTOR)."),
    Setting("log_file_maxsize", int, 2 << 20,
            "A console or daemon log file is emptied when it would grow past this many bytes "
            "(upstream's 2 MiB truncate size); 0: never."),
    Setting("free_space", callable, _free_space,
            "Function(path) -> free bytes of the filesystem holding path; injected by tests to simulate a full disk."),
)


class Settings:
    """Resolved settings; read them as attributes (``settings.storage_dir``)
    or with :meth:`get`.

    :param overrides: values set in code (highest precedence).
    :param env: the environment (default ``os.environ``).
    :param file: a settings file; default: ``$PVCORE_SETTINGS_FILE``, if set.
    """

    def __init__(self, overrides: Optional[Mapping[str, Any]] = None, env: Optional[Mapping[str, str]] = None,
                 file: Optional[str] = None):
        self._decls: Dict[str, Setting] = {}
        self._owners: Dict[str, str] = {}
        self._values: Dict[str, Any] = {}
        self._sources: Dict[str, str] = {}
        self._overrides = dict(overrides or {})
        self._env = os.environ if env is None else env
        self.file = file if file is not None else (self._env.get(SETTINGS_FILE_ENV) or None)
        self._file_values: Dict[str, Tuple[int, str]] = read_settings_file(self.file) if self.file else {}
        self.declare(CORE_SETTINGS, owner="pvcore")

    def declare(self, settings: Iterable[Setting], owner: str = "?") -> None:
        """Add declarations (from a plugin) and resolve their values."""
        for setting in settings:
            if not isinstance(setting, Setting):
                raise SettingsError(f"{owner} declared {setting!r}, not a pvcore.settings.Setting")
            if setting.name in self._decls:
                raise SettingsError(
                    f"setting {setting.name!r} declared twice (by {self._owners[setting.name]} and {owner})")
            self._decls[setting.name] = setting
            self._owners[setting.name] = owner
            self._values[setting.name], self._sources[setting.name] = self._resolve(setting)

    def _resolve(self, setting: Setting) -> Tuple[Any, str]:
        if setting.name in self._overrides:
            return self._overrides[setting.name], "override"
        text = self._env.get(setting.env)
        if text is not None:
            return self._parse(setting, text, setting.env), "environment"
        if setting.name in self._file_values:
            line, text = self._file_values[setting.name]
            return self._parse(setting, text, f"{self.file}:{line}: {setting.name}"), "file"
        if setting.demo is not NO_DEMO and self._values.get("demo"):
            return setting.demo, "demo"
        return setting.default, "default"

    @staticmethod
    def _parse(setting: Setting, text: str, where: str) -> Any:
        try:
            return setting.parse(text)
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"{where}={text!r}: {exc}") from None

    def get(self, name: str) -> Any:
        """Value of setting ``name``; unknown names raise :class:`SettingsError`."""
        try:
            return self._values[name]
        except KeyError:
            raise SettingsError(f"unknown setting {name!r}") from None

    def source(self, name: str) -> str:
        """Where the value of ``name`` came from: ``default``, ``file``,
        ``environment``, ``override``, or what :meth:`supply` named."""
        self.get(name)
        return self._sources[name]

    def supply(self, name: str, value: Any, source: str) -> bool:
        """Replace a *default* with a value computed at boot (the demo device's
        build manifest); a value given by file, environment or code is kept.

        :return: ``True`` if ``value`` was taken.
        """
        if self.source(name) != "default":
            return False
        self._values[name], self._sources[name] = value, source
        return True

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

    def check_file(self) -> None:
        """Fail on a settings-file line naming no declared setting (a typo).

        Called once every plugin has declared its settings.
        """
        for name, (line, _) in self._file_values.items():
            if name not in self._decls:
                raise SettingsError(f"{self.file}:{line}: unknown setting {name!r}")

    def describe(self) -> List[Dict[str, Any]]:
        """Every setting as a JSON-ready dict: name, value, source, default,
        type, environment variable, owner (``pvcore`` or the plugin), help,
        and the demo device's value where it has one. Secret values are
        masked; callables are shown by name."""
        result = []
        for name, setting in self._decls.items():
            result.append({
                "name": name,
                "value": _shown(setting, self._values[name]),
                "source": self._sources[name],
                "default": _shown(setting, setting.default),
                "type": "callable" if setting.type is callable else getattr(setting.type, "__name__", str(setting.type)),
                "env": setting.env,
                "owner": self._owners[name],
                "secret": setting.secret,
                "help": setting.help,
            })
            if setting.demo is not NO_DEMO:
                result[-1]["demo"] = _shown(setting, setting.demo)
        return result


def _shown(setting: Setting, value: Any) -> Any:
    if setting.secret and value not in (None, ""):
        return MASK
    if callable(value) and not isinstance(value, type):
        return getattr(value, "__module__", "?") + "." + getattr(value, "__qualname__", type(value).__name__)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def read_settings_file(path: str) -> Dict[str, Tuple[int, str]]:
    """Parse a settings file: ``name = value`` (or ``PVCORE_NAME=value``)
    lines; ``#`` starts a comment line; blank lines are skipped; a value runs to the end of its line.

    :return: name -> (line number, value text).
    :raises SettingsError: the file cannot be read or a line is malformed.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise SettingsError(f"settings file {path}: {exc.strerror or exc}") from None
    values: Dict[str, Tuple[int, str]] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise SettingsError(f"{path}:{number}: expected 'name = value', got {raw!r}")
        name = name.lower()
        if name.startswith("pvcore_"):  # PVCORE_NAME=value, as in the environment
            name = name[len("pvcore_"):]
        values[name] = (number, value.strip())
    return values
