"""One revision model: a state JSON interpreted once, by its owner (docs/architecture.md §3).

:func:`build` turns a revision's state JSON (already parsed, and validated when
it came through ``PUT /steps/locals/{name}``) into a :class:`Revision`: its
groups in start order, its containers in state order, each with its one name,
group, status goal, restart policy, roles, auto-recovery, objects, driver
references, services and run.json. Every consumer reads this model
(``pv_steps_revision``, documented in :mod:`pv_steps.hookspecs`); nobody else
interprets the JSON. The rules are docs/protocol.md §D2 (containers), §D4.4
(auto-recovery), §D5 (groups), §D7.1 (drivers) and §D8.3 (services).

Everything here is pure and immutable: frozen dataclasses, tuples, and the
JSON documents frozen too (objects become read-only mappings, arrays tuples),
so one instance can be handed to every plugin and cached
(:class:`RevisionCache`). Runtime state (status, pids, attempts) is the
engine's, never the model's.
"""
from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import structlog

log = structlog.get_logger(__name__)

GOALS = ("MOUNTED", "STARTED", "READY")
POLICIES = ("system", "container")
RECOVERING_POLICIES = ("always", "on-failure")
DRIVER_TYPES = (("required", "REQUIRED"), ("optional", "OPTIONAL"), ("manual", "MANUAL"))
DRIVERS_KEY = "bsp/drivers.json"
_SHA = re.compile(r"[0-9a-f]{64}\Z")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def freeze(value: Any) -> Any:
    """A JSON value made immutable: objects → read-only mappings, arrays → tuples."""
    if isinstance(value, dict):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(freeze(item) for item in value)
    return value


# -- auto-recovery -------------------------------------------------------------


@dataclass(frozen=True)
class Recovery:
    """An ``auto_recovery`` block (docs/protocol.md §D4.4).

    ``backoff_policy`` is ``"reboot"``, ``"never"`` or a duration in seconds.
    """

    policy: str = "no"
    max_retries: int = 0
    retry_delay: float = 0.0
    backoff_factor: float = 1.0
    reset_window: float = 0.0
    stable_timeout: float = 0.0
    backoff_policy: Any = "reboot"

    @property
    def recovers(self) -> bool:
        """Only ``always`` and ``on-failure`` restart a crashed container."""
        return self.policy in RECOVERING_POLICIES

    def delay(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (1-based)."""
        return self.retry_delay * self.backoff_factor ** max(attempt - 1, 0)


DEFAULT_APP_RECOVERY = Recovery("on-failure", 5, 5.0, 2.0, 0.0, 30.0, "reboot")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?\s*$")
_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_backoff(value: Any) -> Any:
    """``reboot``/``never`` or a duration (``30s``, ``10min``, ``1h``, a number) → seconds."""
    if isinstance(value, str) and value in ("reboot", "never"):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match:
        return float(match.group(1)) * _UNITS[match.group(2)]
    log.warning("backoff_policy_invalid", value=value)
    return "reboot"


def _num(block: Mapping[str, Any], key: str, default: float) -> float:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return default
    return float(value)


def parse_recovery(block: Any) -> Optional[Recovery]:
    """A run.json/group ``auto_recovery`` object, or ``None`` when absent."""
    if not isinstance(block, Mapping):
        return None
    policy = block.get("policy", block.get("type", "no"))
    if policy not in ("no", "always", "on-failure", "unless-stopped"):
        policy = "no"
    return Recovery(
        policy=policy,
        max_retries=int(_num(block, "max_retries", 0)),
        retry_delay=_num(block, "retry_delay", 0.0),
        backoff_factor=_num(block, "backoff_factor", 1.0),
        reset_window=_num(block, "reset_window", 0.0),
        stable_timeout=_num(block, "stable_timeout", 0.0),
        backoff_policy=parse_backoff(block.get("backoff_policy", "reboot")),
    )


# -- the model -----------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """A group of a revision (docs/protocol.md §D5)."""

    name: str
    status_goal: str = "STARTED"
    restart_policy: str = "container"
    #: seconds; ``None`` when the state gives none (then PV_UPDATER_GOALS_TIMEOUT applies)
    timeout: Optional[float] = None
    recovery: Optional[Recovery] = None


def default_groups() -> Tuple[Group, ...]:
    """``defaults/groups.json`` (docs/protocol.md §D5.1)."""
    return (
        Group("data", "MOUNTED", "system", 30.0),
        Group("root", "STARTED", "system", 30.0),
        Group("platform", "STARTED", "system", 30.0),
        Group("app", "STARTED", "container", 30.0, DEFAULT_APP_RECOVERY),
    )


@dataclass(frozen=True)
class Container:
    """One container of a revision, as its state says (see ``pv_steps_revision``)."""

    name: str
    folder: str
    group: str
    status_goal: str
    restart_policy: str
    roles: Tuple[str, ...]
    recovery: Optional[Recovery]
    run: Mapping[str, Any]
    objects: Mapping[str, str]
    config: Optional[str]
    drivers: Tuple[Tuple[str, str], ...]
    exports: Tuple[Mapping[str, Any], ...]
    requirements: Tuple[Mapping[str, Any], ...]
    digest: str
    configs: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class Revision:
    """A revision's state, interpreted (see ``pv_steps_revision``)."""

    rev: str
    spec: Optional[str]
    groups: Tuple[Group, ...]
    containers: Mapping[str, Container]
    objects: Mapping[str, str]
    bsp: Optional[Mapping[str, Any]]
    drivers: Optional[Mapping[str, Any]]
    default_groups: bool = False
    #: changes whenever a state key no container owns changes: the root keys
    #: (``#spec``, ``device.json`` …), the BSP, ``_config/`` of no container.
    system_digest: str = ""

    def group(self, name: str) -> Optional[Group]:
        return next((g for g in self.groups if g.name == name), None)

    def members(self, group: str) -> Tuple[Container, ...]:
        """The containers of group ``group``, in state order."""
        return tuple(c for c in self.containers.values() if c.group == group)

    def shas(self) -> Tuple[str, ...]:
        """Every object the revision references, sorted, once each."""
        return tuple(sorted(set(self.objects.values())))

    def driver_aliases(self, fitconfig: str = "") -> Dict[str, Tuple[str, ...]]:
        """Alias → module strings of ``bsp/drivers.json`` (docs/protocol.md §D7.1).

        ``all`` always applies; ``fitconfig:<fitconfig>`` too, its aliases
        replacing same-named ones. ``{}`` without a manifest.
        """
        manifest = self.drivers
        if manifest is None:
            return {}
        aliases = _alias_section(manifest.get("all"))
        if fitconfig:
            aliases.update(_alias_section(manifest.get("fitconfig:" + fitconfig)))
        return aliases


def _alias_section(section: Any) -> Dict[str, Tuple[str, ...]]:
    if not isinstance(section, Mapping):
        return {}
    return {alias: tuple(modules) for alias, modules in section.items()
            if isinstance(modules, (list, tuple)) and all(isinstance(m, str) for m in modules)}


# -- interpretation ------------------------------------------------------------


def roles(run: Mapping[str, Any]) -> Tuple[str, ...]:
    # NOTE: a run.json without "roles" is mgmt (docs/protocol.md §D2.2).
    if "roles" not in run:
        return ("mgmt",)
    value = run.get("roles")
    return ("mgmt",) if isinstance(value, (list, tuple)) and "mgmt" in value else ()


def parse_groups(state: Mapping[str, Any],
                 defaults: Optional[Tuple[Group, ...]] = None) -> Tuple[Tuple[Group, ...], bool]:
    """The groups in start order, and whether they are the defaults (``defaults``, else
    upstream's shipped ``defaults/groups.json``)."""
    device = state.get("device.json")
    entries = device.get("groups") if isinstance(device, Mapping) else None
    if entries is None and not isinstance(device, Mapping):
        entries = state.get("groups.json")
    groups = group_entries(entries)
    return (groups, False) if groups else (defaults or default_groups(), True)


def group_entries(entries: Any) -> Tuple[Group, ...]:
    """The groups of a ``groups`` array (``device.json``, ``groups.json``); ``()`` if none."""
    if not isinstance(entries, (list, tuple)):
        return ()
    groups = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        goal = entry.get("status_goal", "STARTED")
        policy = entry.get("restart_policy", "container")
        groups.append(Group(
            name=entry["name"],
            status_goal=goal if goal in GOALS else "STARTED",
            restart_policy=policy if policy in POLICIES else "container",
            timeout=_timeout(entry),
            recovery=parse_recovery(entry.get("auto_recovery")),
        ))
    return tuple(groups)


def load_default_groups(path: str) -> Optional[Tuple[Group, ...]]:
    """The device's default groups from a ``groups.json`` file (upstream's
    ``/etc/pantavisor/defaults/groups.json``); ``None`` when it is unusable (logged)."""
    try:
        with open(path, "rb") as fh:
            groups = group_entries(json.loads(fh.read()))
    except (OSError, ValueError) as exc:
        log.error("default_groups_unreadable", path=path, error=str(exc))
        return None
    if not groups:
        log.error("default_groups_empty", path=path)
        return None
    return groups


def _timeout(entry: Mapping[str, Any]) -> Optional[float]:
    value = entry.get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        log.warning("group_timeout_invalid", group=entry.get("name"), value=value)
        return None
    return float(value)


def owned_keys(state: Mapping[str, Any], name: str) -> Dict[str, Any]:
    """The state keys container ``name`` owns (docs/protocol.md §D2.1)."""
    return {
        key: value for key, value in state.items()
        if key.split("/", 1)[0] == name or key.startswith(f"_config/{name}/")
    }


CONFIG_PREFIX = "_config/"


def config_files(state: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The configuration overlay of container ``name`` (docs/protocol.md §D2.5).

    ``_config/<name>/<path>`` keys, as ``<path>`` → the object's sha256, or
    the file's bytes when the state holds the JSON document itself (pvr
    inlines ``*.json`` files). Paths that could leave the container's root
    (absolute, ``.``, ``..``, empty segments) and values that are neither are
    skipped, and logged.
    """
    prefix = f"{CONFIG_PREFIX}{name}/"
    files: Dict[str, Any] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        path = key[len(prefix):]
        if not path or "\\" in path or "\0" in path or any(p in ("", ".", "..") for p in path.split("/")):
            log.warning("config_overlay_path_refused", container=name, key=key)
        elif isinstance(value, str) and _SHA.match(value):
            files[path] = value
        elif isinstance(value, (dict, list)):
            files[path] = json.dumps(value).encode()
        else:
            log.warning("config_overlay_value_refused", container=name, key=key)
    return MappingProxyType(files)


def driver_references(run: Optional[Mapping[str, Any]]) -> Tuple[Tuple[str, str], ...]:
    """``(alias, TYPE)`` for each driver a run.json references, required, optional, manual."""
    drivers = run.get("drivers") if isinstance(run, Mapping) else None
    if not isinstance(drivers, Mapping):
        return ()
    result = []
    for key, kind in DRIVER_TYPES:
        names = drivers.get(key)
        for name in names if isinstance(names, (list, tuple)) else ():
            if isinstance(name, str):
                result.append((name, kind))
    return tuple(result)


def _exports(doc: Any) -> Tuple[Mapping[str, Any], ...]:
    # services.json: an object with "services", or a bare array (docs/protocol.md §D8.3);
    # hosted-bus "owns" entries have no name and export nothing.
    if isinstance(doc, Mapping):
        doc = doc.get("services")
    if not isinstance(doc, (list, tuple)):
        return ()
    return tuple(e for e in doc if isinstance(e, Mapping) and isinstance(e.get("name"), str))


def _requirements(run: Mapping[str, Any]) -> Tuple[Mapping[str, Any], ...]:
    services = run.get("services")
    if not isinstance(services, Mapping):
        return ()
    result: List[Mapping[str, Any]] = []
    for section in ("required", "optional"):
        items = services.get(section)
        if isinstance(items, str):  # older manifests: "a,b"
            items = [MappingProxyType({"name": n.strip()}) for n in items.split(",") if n.strip()]
        if isinstance(items, (list, tuple)):
            result.extend(r for r in items if isinstance(r, Mapping) and isinstance(r.get("name"), str))
    return tuple(result)


def build(rev: str, state: Mapping[str, Any], default: Optional[Tuple[Group, ...]] = None) -> Revision:
    """The model of revision ``rev`` from its state JSON (a dict).

    Lenient, like the engine always was: a state that got onto the disk
    without ``PUT /steps`` (a seed, a factory image) still loads; what it gets
    wrong is skipped or defaulted, and logged.
    """
    groups, defaults = parse_groups(state, default)
    names = {group.name for group in groups}
    objects = {key: value for key, value in state.items() if isinstance(value, str) and _SHA.match(value)}
    explicit: List[Tuple[str, str, Mapping[str, Any], Optional[str]]] = []
    for key, run in state.items():
        if not key.endswith("/run.json") or key.count("/") != 1 or key.startswith(("bsp/", "_")):
            continue
        if not isinstance(run, Mapping):
            continue
        folder = key.split("/", 1)[0]
        # One name per container: PUT /steps refuses a run.json naming another
        # (docs/protocol.md §D2.4); a state that got here otherwise keeps run.json's.
        name = run.get("name") if isinstance(run.get("name"), str) else folder
        wanted = run.get("group", run.get("runlevel"))
        if wanted is not None and wanted not in names:
            log.warning("container_group_unknown", container=name, group=wanted)
            wanted = None
        explicit.append((name, folder, run, wanted))
    by_name = {group.name: group for group in groups}
    root_taken = any(wanted == "root" for _, _, _, wanted in explicit)
    containers: Dict[str, Container] = {}
    for name, folder, run, wanted in explicit:
        if wanted is None:
            if defaults:
                wanted = "platform" if root_taken else "root"
                root_taken = True
            else:  # upstream's code (its docs say the state is invalid): docs/protocol.md §D2.2
                wanted = groups[-1].name
                log.warning("container_without_group", container=name, group=wanted)
        group = by_name[wanted]
        goal = run.get("status_goal")
        policy = run.get("restart_policy")
        prefix = folder + "/"
        config = run.get("config")
        containers[name] = Container(
            name=name,
            folder=folder,
            group=group.name,
            status_goal=goal if goal in GOALS else group.status_goal,
            restart_policy=policy if policy in POLICIES else group.restart_policy,
            roles=roles(run),
            recovery=parse_recovery(run.get("auto_recovery")),
            run=freeze(dict(run)),
            objects=MappingProxyType({k[len(prefix):]: v for k, v in objects.items() if k.startswith(prefix)}),
            config=config if isinstance(config, str) and config else None,
            drivers=driver_references(run),
            exports=freeze(_exports(state.get(prefix + "services.json"))),
            requirements=freeze(_requirements(run)),
            digest=json.dumps(owned_keys(state, name), sort_keys=True),
            configs=config_files(state, name),
        )
    owned = {key for name in containers for key in owned_keys(state, name)}
    system = {key: value for key, value in state.items() if key not in owned}
    bsp = state.get("bsp/run.json")
    drivers = state.get(DRIVERS_KEY)
    spec = state.get("#spec")
    return Revision(
        rev=rev,
        spec=spec if isinstance(spec, str) else None,
        groups=groups,
        containers=MappingProxyType(containers),
        objects=MappingProxyType(objects),
        bsp=freeze(bsp) if isinstance(bsp, dict) else None,
        drivers=freeze(drivers) if isinstance(drivers, dict) else None,
        default_groups=defaults,
        system_digest=json.dumps(system, sort_keys=True),
    )


class RevisionCache:
    """The models of the last few revisions asked for, each built once per state file.

    An entry is keyed by the revision and its ``.pvr/json``'s identity (inode,
    size, mtime): a local revision rewritten by ``PUT /steps/locals/{name}``
    (a new file renamed into place) is built again on its next use, a removed
    one is not found. At most ``size`` models are kept: a transition needs
    two (the one it switches to, the running one to roll back to), and a
    model is about as large as its state (docs/architecture.md, "Memory").

    :param resolve: revision name (``current`` too) → concrete name, or ``None``.
    :param state_path: concrete name → path of its state JSON, or ``None``.
    :param load: concrete name → its state JSON as a dict, or ``None``.
    :param default_groups: the groups of a state that declares none (the
        device's defaults file); upstream's shipped ones when ``None``.
    """

    def __init__(self, resolve: Callable[[str], Optional[str]], state_path: Callable[[str], Optional[str]],
                 load: Callable[[str], Optional[Mapping[str, Any]]], size: int = 2,
                 default_groups: Optional[Tuple[Group, ...]] = None):
        self._default_groups = default_groups
        self._resolve = resolve
        self._state_path = state_path
        self._load = load
        self._size = size
        self._lock = threading.Lock()
        self._models: "OrderedDict[str, Tuple[Tuple[int, int, int], Revision]]" = OrderedDict()

    def get(self, rev: Optional[str]) -> Optional[Revision]:
        name = self._resolve(rev) if rev is not None else None
        path = self._state_path(name) if name is not None else None
        if path is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            with self._lock:
                self._models.pop(name, None)
            return None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            cached = self._models.get(name)
            if cached is not None and cached[0] == key:
                self._models.move_to_end(name)
                return cached[1]
        state = self._load(name)
        if state is None:
            return None
        model = build(name, state, self._default_groups)
        with self._lock:
            self._models[name] = (key, model)
            self._models.move_to_end(name)
            while len(self._models) > self._size:
                self._models.popitem(last=False)
        log.debug("revision_model_built", rev=name, containers=list(model.containers))
        return model
