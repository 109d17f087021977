"""Declared ownership: which plugin owns which file, device-meta key and event type.

Every plugin declares what it owns with ``pvcore_declare_ownership``, which
returns one :class:`Owns`. The core collects the declarations at boot into a
:class:`Registry` (``core.ownership``); two owners of one path, device-meta
key or event type fail the boot naming both, and publishing an event type
nobody declared, or another plugin's, fails the publish
(docs/plugins.md, "What a plugin owns"; docs/architecture.md §2 is tested
against these declarations).

Paths are patterns under one of two roots, ``<storage>/`` (the
``storage_dir`` setting) and ``<run>/`` (``run_dir``). A pattern ending in
``/`` is a folder and covers everything below it; other segments may hold
placeholders in angle brackets (``<c>``, ``<key>``); ``<rev>`` also matches a
local revision's two segments (``locals/<name>``). A named segment is more
specific than a placeholder: ``<storage>/logs/daemons/`` and
``<storage>/logs/<rev>/`` do not clash. Every plugin owns its
:meth:`pvcore.app.Core.data_dir`, ``<storage>/pvcore/<name>/``, without
declaring it.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from pvcore.errors import StartupError

#: The roots a path pattern starts with.
ROOTS = ("<storage>/", "<run>/")
#: The core's own name as an owner.
CORE = "pvcore"
DATA_DIR_HELP = "the plugin's own files (`core.data_dir()`), no declaration needed"


class UndeclaredEvent(LookupError):
    """An event type published by a plugin that does not own it (a bug in that plugin)."""


@dataclasses.dataclass(frozen=True)
class MetaFact:
    """A device-meta key whose value the owner publishes in one of its events.

    :ivar event: the owner's event type carrying the value.
    :ivar field: ``"subject"`` (the event's subject) or a key of its data;
        a ``None`` value deletes the key.
    :ivar help: what the key says.
    """

    event: str
    field: str = "subject"
    help: str = ""

    def value(self, event) -> Optional[str]:
        """The key's value carried by ``event`` (``None``: delete the key)."""
        raw = event.subject if self.field == "subject" else event.data.get(self.field)
        return None if raw is None else str(raw)


#: What a ``listens`` entry may be: event types or ``prefix.*`` patterns, or a
#: function of the registry giving them (the core's own listeners follow what
#: plugins declared, e.g. :attr:`Owns.caller_events`).
Listens = Union[Sequence[str], Callable[["Registry"], Iterable[str]], None]


@dataclasses.dataclass(frozen=True)
class Owns:
    """What one plugin owns, returned by its ``pvcore_declare_ownership``.

    :ivar paths: ``{pattern: what it holds}``, e.g.
        ``{"<storage>/objects/": "content-addressed objects"}``.
    :ivar device_meta: ``{key: help}`` for device-meta keys the plugin writes
        itself (pv_metadata's probes), or ``{key: MetaFact(...)}`` for a key
        whose value the plugin publishes in an event; the metadata store writes
        it from that event, and nobody else ever does.
    :ivar events: ``{type: help}``: the event types this plugin publishes;
        ``"<prefix>.*"`` covers every type below ``prefix``.
    :ivar listens: the event types (or ``prefix.*``) this plugin's
        ``pvcore_event`` is called for; ``None`` (the default) means every
        event. A listener that does I/O hands it to its own thread.
    :ivar caller_events: own event types after which callers must be
        identified again (who a pid is changes: a container started or
        stopped, another revision runs).
    :ivar health: ``{field: event type}``: ``GET /_pvcore/health`` shows
        ``field`` as the subject of the last such event.
    """

    paths: Mapping[str, str] = dataclasses.field(default_factory=dict)
    device_meta: Mapping[str, Union[str, MetaFact]] = dataclasses.field(default_factory=dict)
    events: Mapping[str, str] = dataclasses.field(default_factory=dict)
    listens: Listens = None
    caller_events: Sequence[str] = ()
    health: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class OwnedPath:
    pattern: str
    owner: str
    help: str
    regex: "re.Pattern"

    @property
    def folder(self) -> bool:
        return self.pattern.endswith("/")

    def matches(self, path: str) -> bool:
        """Whether ``path`` (``<storage>/…``) is this entry or, for a folder, below it."""
        return bool(self.regex.match(path))


def _placeholder(name: str) -> str:
    return r"(?:locals/)?[^/]+" if name == "rev" else r"[^/]+"


def _compile(pattern: str) -> "re.Pattern":
    parts = re.split(r"<([a-z_]+)>", pattern)
    regex = "".join(re.escape(part) if i % 2 == 0 else _placeholder(part) for i, part in enumerate(parts))
    # The root markers are literal text here (re.escape kept them).
    if pattern.endswith("/"):
        return re.compile("^" + regex[:-1] + r"(?:/.*)?$")
    return re.compile("^" + regex + "$")


def _shape(pattern: str) -> Tuple[str, ...]:
    """Segments with every placeholder alike: what two declarations compare."""
    return tuple(re.sub(r"<[a-z_]+>", "*", pattern.rstrip("/")).split("/"))


def _clash(a: OwnedPath, b: OwnedPath) -> bool:
    sa, sb = _shape(a.pattern), _shape(b.pattern)
    if sa == sb:
        return True
    if a.folder and sb[:len(sa)] == sa:
        return True
    return b.folder and sa[:len(sb)] == sb


def _type_matcher(types: Iterable[str]) -> Callable[[str], bool]:
    exact = set()
    prefixes = []
    for kind in types:
        if kind.endswith(".*"):
            prefixes.append(kind[:-1])
        else:
            exact.add(kind)
    prefixes = tuple(prefixes)
    return lambda kind: kind in exact or (bool(prefixes) and kind.startswith(prefixes))


class Registry:
    """Every plugin's declaration, checked; ``core.ownership``.

    :ivar paths: :class:`OwnedPath` entries, in declaration order.
    :ivar device_meta: ``{key: (owner, help or MetaFact)}``.
    :ivar events: ``{type: (owner, help)}``.
    :ivar listens: ``{plugin: matcher}`` for plugins that subscribed.
    :ivar caller_events: event types after which callers are identified again.
    :ivar health: ``{field: event type}`` shown by ``/_pvcore/health``.
    """

    def __init__(self) -> None:
        self.paths: List[OwnedPath] = []
        self.device_meta: Dict[str, Tuple[str, Union[str, MetaFact]]] = {}
        self.events: Dict[str, Tuple[str, str]] = {}
        self.declared: Dict[str, Owns] = {}
        self.listens: Dict[str, Callable[[str], bool]] = {}
        self.caller_events: set = set()
        self.health: Dict[str, str] = {}
        #: top-level package of a module plugin -> its name (who is publishing)
        self.packages: Dict[str, str] = {}

    # -- building ---------------------------------------------------------------

    def add(self, owner: str, owns: Owns) -> None:
        """Add ``owner``'s declaration; :raises StartupError: a clash, naming both."""
        if not isinstance(owns, Owns):
            raise StartupError(f"plugin {owner}: pvcore_declare_ownership must return pvcore.ownership.Owns, "
                               f"not {owns!r}")
        self.declared[owner] = owns
        for pattern, help in owns.paths.items():
            self.add_path(owner, pattern, help)
        for key, spec in owns.device_meta.items():
            if key in self.device_meta:
                raise StartupError(f"device-meta key {key} is owned by two plugins: "
                                   f"{self.device_meta[key][0]} and {owner}")
            self.device_meta[key] = (owner, spec)
        for kind, help in owns.events.items():
            for other, (other_owner, _help) in self.events.items():
                if kind == other or _overlaps(kind, other):
                    raise StartupError(f"event type {kind} is owned by two plugins: {other_owner} ({other}) "
                                       f"and {owner}")
            self.events[kind] = (owner, help)
        self.caller_events.update(owns.caller_events)
        self.health.update(owns.health)

    def add_path(self, owner: str, pattern: str, help: str = "") -> None:
        if not pattern.startswith(ROOTS) or "//" in pattern or "/../" in pattern + "/":
            raise StartupError(f"plugin {owner}: path {pattern!r} must start with <storage>/ or <run>/")
        entry = OwnedPath(pattern, owner, help, _compile(pattern))
        for other in self.paths:
            if _clash(entry, other):
                raise StartupError(f"path {pattern} is owned by two plugins: {other.owner} ({other.pattern}) "
                                   f"and {owner}")
        self.paths.append(entry)

    def finish(self) -> None:
        """Check what needs every declaration: own events named by ``caller_events``,
        ``health`` and ``MetaFact``; compile subscriptions."""
        for owner, owns in self.declared.items():
            mine = _type_matcher(kind for kind, (o, _h) in self.events.items() if o == owner)
            named = list(owns.caller_events) + list(owns.health.values())
            named += [spec.event for spec in owns.device_meta.values() if isinstance(spec, MetaFact)]
            for kind in named:
                if not mine(kind):
                    raise StartupError(f"plugin {owner}: declares {kind} but does not own that event type")
        for owner, owns in self.declared.items():
            if owns.listens is None:
                continue
            types = owns.listens(self) if callable(owns.listens) else owns.listens
            if isinstance(types, str):
                raise StartupError(f"plugin {owner}: listens must be a list of event types, not {types!r}")
            self.listens[owner] = _type_matcher(list(types))

    # -- questions ----------------------------------------------------------------

    def event_owner(self, kind: str) -> Optional[str]:
        """The plugin that declared event type ``kind``, or ``None``."""
        owner = self.events.get(kind)
        if owner is not None:
            return owner[0]
        for declared, (owner, _help) in self.events.items():
            if declared.endswith(".*") and kind.startswith(declared[:-1]):
                return owner
        return None

    def path_owner(self, path: str) -> Optional[OwnedPath]:
        """The most specific declaration covering ``path`` (``<storage>/…``), or ``None``."""
        found = [entry for entry in self.paths if entry.matches(path)]
        if not found:
            return None
        # Most literal text wins: a named segment beats a placeholder.
        return max(found, key=lambda e: (len(_shape(e.pattern)), -e.pattern.count("<")))

    def is_layout(self, path: str) -> bool:
        """Whether ``path`` is a folder above some declared path (``<storage>/logs``):
        the shared layout nobody owns alone."""
        depth = len(path.rstrip("/").split("/"))
        return any(_compile(_prefix(entry.pattern, depth)).match(path.rstrip("/"))
                   for entry in self.paths if len(_shape(entry.pattern)) > depth)

    def meta_owner(self, key: str) -> Optional[str]:
        owner = self.device_meta.get(key)
        return owner[0] if owner is not None else None

    def meta_facts(self) -> Dict[str, Tuple[str, MetaFact]]:
        """``{key: (owner, MetaFact)}``: device-meta keys published through events."""
        return {key: (owner, spec) for key, (owner, spec) in self.device_meta.items() if isinstance(spec, MetaFact)}

    def check_publish(self, kind: str, module: Optional[str]) -> None:
        """Refuse to publish ``kind`` from ``module`` unless its package owns it.

        :raises UndeclaredEvent: nobody declared ``kind``, or a plugin
            publishes another plugin's type (naming both). Code that is no
            module plugin's (tests, embedding code) may publish any declared type.
        """
        owner = self.event_owner(kind)
        publisher = self.packages.get((module or "").split(".")[0])
        if owner is None:
            raise UndeclaredEvent(f"event type {kind} is declared by no plugin"
                                  f"{f' (published by {publisher})' if publisher else ''}: "
                                  "declare it in pvcore_declare_ownership (docs/plugins.md)")
        if publisher is not None and publisher != owner:
            raise UndeclaredEvent(f"plugin {publisher} publishes {kind}, which plugin {owner} owns")

    def subscribed(self, plugin: str, kind: str) -> bool:
        """Whether ``plugin``'s ``pvcore_event`` wants events of type ``kind``."""
        matcher = self.listens.get(plugin)
        return matcher is None or matcher(kind)


def _prefix(pattern: str, depth: int) -> str:
    return "/".join(pattern.rstrip("/").split("/")[:depth])


def _overlaps(a: str, b: str) -> bool:
    """``x.*`` overlaps ``x.y`` and ``x.y.*``."""
    if a.endswith(".*") and b.startswith(a[:-1]):
        return True
    return b.endswith(".*") and a.startswith(b[:-1])


#: The files the core itself creates (pvcore/app.py, pvcore/supervisor.py).
CORE_OWNS = Owns(paths={
    "<run>/pv-ctrl": "the pv-ctrl socket gunicorn listens on (the `socket` setting)",
    "<run>/supervisor.lock": "flock held by the worker whose services run: a reloading worker waits "
                             "until the old one stopped its children",
    "<run>/pgroups/": "one `<key>.pgid` record per supervised process group, so the next worker kills "
                      "what a crashed one left (pvcore/supervisor.py)",
    "<run>/ctrl/": "each running container's own pv-ctrl socket, bound into it for this start "
                   "(pvcore/ctrlsockets.py)",
})


def collect(pm, plugin_name: Callable[[Any], str]) -> Registry:
    """Every loaded plugin's declaration in one checked :class:`Registry`.

    :raises StartupError: two owners of one path, key or event type (naming
        both), a malformed declaration, or a plugin naming an event it does
        not own.
    """
    registry = Registry()
    registry.add(CORE, CORE_OWNS)
    hook = pm.hook.pvcore_declare_ownership
    # NOTE: registration order (built-ins first), so a clash names the newcomer last.
    for impl in hook.get_hookimpls():
        owner = plugin_name(impl.plugin)
        try:
            owns = impl.function()
        except Exception as exc:
            raise StartupError(f"plugin {owner}: pvcore_declare_ownership raised {type(exc).__name__}: {exc}") \
                from None
        if owns is None:
            continue
        registry.add(owner, owns)
    packages: Dict[str, List[str]] = {}
    for name, plugin in pm.list_name_plugin():
        if plugin is None or name.startswith(CORE):
            continue
        registry.add_path(name, f"<storage>/pvcore/{name}/", DATA_DIR_HELP)
        if inspect.ismodule(plugin):
            packages.setdefault(plugin.__name__.split(".")[0], []).append(name)
    # NOTE: a package registering two plugins cannot tell them apart: unchecked.
    registry.packages = {package: names[0] for package, names in packages.items() if len(names) == 1}
    registry.finish()
    return registry


def declare(core) -> None:
    """Collect what each plugin owns into ``core.ownership`` and check the hook
    names plugins use (pvcore/names.py); from now on events go to their
    subscribers only (pvcore/listeners.py). Called by ``build_core`` before
    ``pvcore_startup``.

    :raises StartupError: a clash, a misspelled optional hook, a ``core.call``
        literal naming no hook.
    """
    from pvcore import names  # NOTE: here: pvcore.names is needed only at boot
    from pvcore.listeners import Listeners

    pm = core.pm
    core.ownership = collect(pm, pm.get_name)
    core.listeners = Listeners(pm, core.ownership)
    names.check(pm)
    # A type published as a literal is checked now, not at its first publish.
    for name, plugin in pm.list_name_plugin():
        if plugin is None or not inspect.ismodule(plugin):
            continue
        for path, kind in names.static_publishes(plugin):
            try:
                core.ownership.check_publish(kind, plugin.__name__)
            except UndeclaredEvent as exc:
                raise StartupError(f"plugin {name}: {exc}") from None
