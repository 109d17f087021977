"""The framework's hooks: the only hookspecs the core declares.

A plugin implements a hook by defining a function of the same name marked with
:data:`pvcore.hookimpl`. Implementations may accept fewer arguments than the
spec lists (pluggy's opt-in arguments), so specs can grow without breaking
plugins. The core passes one :class:`pvcore.app.Core` object, ``core``, to
nearly every hook: ``core.settings``, ``core.hook``, ``core.stash`` (typed
per-plugin state) and ``core.supervisor`` (process groups) hang off it.

These hooks are the framework only: settings, start-up and shutdown, routes,
services, caller identity and cross-cutting events. A domain contract (the
revision store, the container engine, the object store …) is declared by the
plugin that owns that state, in its own ``hookspecs.py``, added through
:func:`pvcore_addhooks`; see docs/architecture.md §3 (contracts). Hooks
marked *firstresult* stop at the first implementation that returns something
other than ``None``; the others collect every non-``None`` result in a list
(most recently registered plugin first).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import pluggy

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from pvcore.core import Core
    from pvcore.events import Event
    from pvcore.ownership import Owns
    from pvcore.services import Service
    from pvcore.settings import Setting

hookspec = pluggy.HookspecMarker("pvcore")

# ---------------------------------------------------------------------------
# Start-up and shutdown
# ---------------------------------------------------------------------------


@hookspec(historic=True)
def pvcore_addhooks(pluginmanager: "pluggy.PluginManager") -> None:
    """Add the hookspecs of a contract this plugin owns.

    :param pluginmanager: the pluggy plugin manager; call
        ``pluginmanager.add_hookspecs(module)`` with the plugin's
        ``hookspecs`` module.

    Historic: a plugin registered later still gets the call. A plugin that
    owns a domain contract declares it here, so the contract exists exactly
    when its owner is loaded; a plugin that only calls or implements another
    plugin's contract copes with its absence (:meth:`pvcore.app.Core.call`,
    ``hookimpl(optionalhook=True)``).
    """


@hookspec
def pvcore_declare_ownership() -> Optional["Owns"]:
    """Declare what this plugin owns: files, device-meta keys, event types.

    :return: one :class:`pvcore.ownership.Owns`: ``paths`` (patterns under
        ``<storage>/`` or ``<run>/``), ``device_meta`` keys, the event types it
        publishes (``events``), and the ones its ``pvcore_event`` listens to
        (``listens``; by default every event).

    Called once while the app is built, before :func:`pvcore_startup`. Two
    plugins owning one path, key or event type fail the boot naming both;
    publishing a type the plugin did not declare fails the publish
    (docs/plugins.md, "What a plugin owns"). ``core.data_dir()`` is every
    plugin's own without declaring it.
    """


@hookspec
def pvcore_declare_settings() -> Sequence["Setting"]:
    """Declare the settings a plugin reads.

    :return: a list of :class:`pvcore.settings.Setting`. Each becomes readable
        as ``core.settings.get(name)`` and is set through its environment
        variable ``PVCORE_<NAME>`` or the overrides given to the app factory.
        Two plugins declaring the same name fail the boot.

    Called once while the app is built, before :func:`pvcore_startup`.
    """


@hookspec
def pvcore_startup(core: "Core") -> None:
    """Build the plugin's state and put it in ``core.stash``.

    :param core: the core being built.

    Called once per app, while :func:`pvcore.app.build_core` runs, in plugin
    registration order (built-ins first). May read and write files (loading
    persisted state, sweeping stale temp files) but must not start threads or
    processes: that is :func:`pvcore_services`' job, so that tests and
    gunicorn's master never spawn anything.
    """


@hookspec
def pvcore_routes(core: "Core") -> Sequence[tuple]:
    """Return the routes this plugin serves.

    :param core: the core being built (its stash holds the plugin's state).
    :return: a list of ``(uri_template, resource)`` or
        ``(uri_template, resource, {"suffix": ...})`` tuples. The core adds
        them to the Falcon app; a template+method claimed by two plugins
        fails the boot naming both.

    Resources are Falcon resource classes. Every method needs a caller with
    the ``mgmt`` role unless the resource's ``mgmt`` attribute is ``False``
    or maps the method to ``False`` (``{"GET": False}``), or the responder is
    marked ``@pvcore.app.requires_mgmt(False)`` (only ``/signal`` upstream).
    A malformed answer fails the boot naming the plugin.
    """


@hookspec
def pvcore_services(core: "Core") -> Sequence["Service"]:
    """Return background services (threads, supervised processes) to run.

    :return: objects with ``name``, ``start()`` and ``stop()`` and an optional
        integer ``priority`` (lower starts earlier; default 100).

    Called by ``core.start()``, which gunicorn runs from ``post_worker_init``
    inside the worker. Services are started in priority order and stopped in
    reverse order by ``core.stop()`` (``worker_exit``). ``stop()`` must be
    idempotent and bounded in time.
    """


@hookspec
def pvcore_shutdown(core: "Core") -> None:
    """Release what :func:`pvcore_startup` took (after all services stopped)."""


# ---------------------------------------------------------------------------
# Callers and access control
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def pvcore_identify_caller(core: "Core", pid: int) -> Optional[str]:
    """Map the peer process of a request to a caller name. *firstresult*

    :param pid: the peer pid read with ``SO_PEERCRED`` from the client socket.
    :return: a container name, ``"_pv_"`` for Pantavisor/the host, ``""``
        for a peer known to be no caller at all (e.g. a process of a container
        that no longer runs: it stops the other resolvers), or ``None`` to let
        the next resolver try. The core's resolver runs last (``trylast``):
        the peer's cgroup against :func:`pvcore_caller_cgroups`, upstream's
        cgroup names, then the host, recognised positively
        (docs/architecture.md, "Callers"); anything else is unknown.
    """


@hookspec
def pvcore_caller_leaders(core: "Core") -> Optional[Mapping[str, int]]:
    """The leading process of each running caller a plugin runs: ``{name: pid}`` (a container's init).

    No process can leave its pid namespace, so a peer in a leader's pid
    namespace, or in one created below it, is that caller and no other
    (docs/architecture.md §6). Leaders in pvcore's own pid namespace (the
    process runtime's) say nothing. Called for a connection's first request;
    must be quick.
    """


@hookspec
def pvcore_caller_cgroups(core: "Core") -> Optional[Mapping[str, Sequence[str]]]:
    """Cgroups of the callers a plugin runs: ``{name: ["<controllers>:<path>", ...]}``.

    Each entry is the second and third field of a ``/proc/<pid>/cgroup``
    line (:class:`pvcore.cgroups.CgroupRef`; ``":/pvcore/x/web"`` on cgroup v2,
    ``"freezer:/pvcore/x/web"`` on v1). A peer in one of these cgroups, or
    below it, is that caller; no process can leave its cgroup by forking.
    Called for a connection's first request; must be quick.
    """


@hookspec(firstresult=True)
def pvcore_caller_roles(core: "Core", name: str) -> Optional[Sequence[str]]:
    """Roles of the caller ``name`` (a container). *firstresult*

    Answered by whoever runs containers, from the definition of the running
    revision.

    :return: the roles (``["mgmt"]`` makes the caller privileged), or
        ``None`` when no such container runs; the caller is then unknown and
        the request gets 500 (docs/protocol.md §4.2).
    """


# ---------------------------------------------------------------------------
# Cross-cutting events
# ---------------------------------------------------------------------------


@hookspec
def pvcore_event(core: "Core", event: "Event") -> None:
    """A device event was published (:meth:`pvcore.app.Core.publish`).

    :param event: a :class:`pvcore.events.Event` (id, time, type, subject,
        data). Every plugin that owns state publishes its changes; this is the
        one hook to follow them (the ``/_pvcore/events`` stream is one
        listener). Called only for the types the plugin subscribed to
        (``listens`` in its :func:`pvcore_declare_ownership`; every type
        without one). Implementations run in the publisher's thread,
        serialised, in id order: be quick, never block, never raise; hand
        I/O to your own thread (:class:`pvcore.handoff.HandOff`).
    """


@hookspec
def pvcore_activity(core: "Core", name: str, active: bool) -> None:
    """A device activity started (``active=True``) or ended.

    Names: ``update`` (revision transition), ``devmeta``/``usrmeta``
    (metadata written), ``shutdown`` (poweroff/reboot), ``boot``. Power
    management listens to these to keep the device awake while one runs.
    """
