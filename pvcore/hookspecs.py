"""Every hook a pvcore plugin can implement.

A plugin implements a hook by defining a function of the same name marked with
:data:`pvcore.hookimpl`. Implementations may accept fewer arguments than the
spec lists (pluggy's opt-in arguments), so specs can grow without breaking
plugins. The core passes one :class:`pvcore.app.Core` object, ``core``, to
nearly every hook: ``core.settings``, ``core.hook``, ``core.stash`` (typed
per-plugin state) and ``core.supervisor`` (process groups) hang off it.

Hooks marked *firstresult* stop at the first implementation that returns
something other than ``None``; the others collect every non-``None`` result in
a list (most recently registered plugin first). Device plugins cooperate only
through these hooks: a plugin never imports another plugin.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

import pluggy

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from pvcore.app import Core
    from pvcore.events import Event
    from pvcore.services import Service
    from pvcore.settings import Setting

hookspec = pluggy.HookspecMarker("pvcore")

# ---------------------------------------------------------------------------
# Start-up and shutdown
# ---------------------------------------------------------------------------


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
    """Roles of the container ``name`` in the running revision. *firstresult*

    :return: the roles (``["mgmt"]`` makes the caller privileged), or
        ``None`` when no such container runs; the caller is then unknown and
        the request gets the contract's 500.
    """


# ---------------------------------------------------------------------------
# Storage: objects and revisions
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def pvcore_object_path(core: "Core", sha: str) -> Optional[str]:
    """Filesystem path of the complete object ``sha``. *firstresult*

    :return: the path, or ``None`` when the object is not stored.
    """


@hookspec(firstresult=True)
def pvcore_running_revision(core: "Core") -> Optional[str]:
    """Name of the running revision (``"0"``, ``"locals/x"``). *firstresult*"""


@hookspec(firstresult=True)
def pvcore_revision_state(core: "Core", rev: str) -> Optional[Mapping[str, Any]]:
    """The parsed state JSON of revision ``rev``. *firstresult*

    :param rev: a revision name; ``"current"`` means the running one.
    :return: the state as a dict, or ``None`` when the revision does not exist
        or its JSON cannot be parsed.
    """


@hookspec(firstresult=True)
def pvcore_revision_objects(core: "Core", rev: str) -> Optional[Sequence[str]]:
    """The object shas revision ``rev`` references. *firstresult*

    :return: a list of sha256 strings, or ``None`` for an unknown revision.
    """


@hookspec
def pvcore_revisions_in_use(core: "Core") -> Iterable[str]:
    """Revisions garbage collection must keep (e.g. an update in flight).

    :return: revision names; every plugin's answers are honoured.
    """


@hookspec
def pvcore_objects_in_use(core: "Core") -> Iterable[str]:
    """Object shas garbage collection must keep.

    :return: shas; the steps plugin answers with every object of every kept
        revision.
    """


@hookspec
def pvcore_garbage_collect(core: "Core") -> int:
    """Remove garbage this plugin owns; return the bytes reclaimed.

    Fired by ``POST /storage/gc`` and the ``RUN_GC`` command; the response
    reports the sum. Revisions are pruned (``tryfirst``) before objects, so
    objects of removed revisions are reclaimed in the same run.
    """


@hookspec(firstresult=True)
def pvcore_set_progress(
    core: "Core", rev: str, status: str, message: str, logs: Optional[str] = None
) -> Optional[bool]:
    """Write revision ``rev``'s progress JSON (device-model §3.1). *firstresult*

    :param status: ``NEW``, ``INPROGRESS``, ``TESTING``, ``UPDATED``, ``DONE``,
        ``WONTGO``, ``ERROR`` …; the percentage is derived from it.
    :param logs: optional text kept in ``.pv/logs`` and shown as ``logs``.
    :return: ``True`` once written, ``None`` if the revision does not exist.
    """


@hookspec(firstresult=True)
def pvcore_set_running_revision(core: "Core", rev: str, try_once: bool = False) -> Optional[bool]:
    """Make ``rev`` the running revision, uncommitted. *firstresult*

    Points ``trails/current`` at ``rev`` and records it as being tried
    (``pv_try``). With ``try_once`` the next boot goes back to the last
    committed revision instead of trying ``rev`` again.
    """


@hookspec(firstresult=True)
def pvcore_commit_revision(core: "Core", rev: str) -> Optional[bool]:
    """Commit ``rev``: it becomes the rollback point (``pv_rev``, ``.pv/done``). *firstresult*"""


@hookspec(firstresult=True)
def pvcore_make_factory(core: "Core", rev: str) -> Optional[bool]:
    """Replace revision ``0`` with a copy of ``rev``'s state JSON. *firstresult*"""


@hookspec
def pvcore_revision_changing(core: "Core", old: Optional[str], new: str) -> None:
    """A transition from revision ``old`` to ``new`` is about to start."""


@hookspec
def pvcore_revision_changed(core: "Core", old: Optional[str], new: str, ok: bool) -> None:
    """A transition ended; ``ok`` is ``False`` when it was rolled back."""


# ---------------------------------------------------------------------------
# Container engine
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def pvcore_container_runtime(core: "Core") -> Any:
    """The runtime that starts container processes. *firstresult*

    :return: an object with ``start(container) -> handle``,
        ``stop(handle, timeout)``, ``pid(handle)`` and ``poll(handle) ->
        exit status or None`` (non-blocking; see :mod:`pv_containers.runtime`). The built-in process runtime is
        ``trylast``; an LXC plugin returns its own.
    """


@hookspec(firstresult=True)
def pvcore_run_revision(
    core: "Core", rev: str, state: Mapping[str, Any], only_changed: bool = False, timeout: Optional[float] = None
) -> Optional[tuple]:
    """Stop the running containers and bring up revision ``rev``. *firstresult*

    :param only_changed: restart only containers whose definition changed.
    :param timeout: seconds to wait for every status goal.
    :return: ``(ok, message)``; ``ok`` is ``False`` when a container did not
        reach its status goal in time (the message says which).
    """


@hookspec(firstresult=True)
def pvcore_stop_containers(core: "Core", timeout: Optional[float] = None) -> Optional[bool]:
    """Stop every container in reverse group order (poweroff, reboot). *firstresult*"""


@hookspec(firstresult=True)
def pvcore_container_pids(core: "Core") -> Optional[Mapping[str, int]]:
    """Init pid of each container of the running revision (-1 if not running). *firstresult*"""


@hookspec(firstresult=True)
def pvcore_container_signal(core: "Core", name: str, type: str, payload: str) -> Optional[bool]:
    """Deliver a ``/signal`` from container ``name``. *firstresult*

    :return: ``True`` if accepted, ``False`` if not expected from that
        container (the endpoint then answers 500).
    """


@hookspec(firstresult=True)
def pvcore_group_list(core: "Core") -> Optional[Sequence[Mapping[str, Any]]]:
    """The groups of the running revision as ``GET /groups`` objects. *firstresult*"""


@hookspec
def pvcore_container_starting(core: "Core", name: str, run: Mapping[str, Any]) -> None:
    """Container ``name`` (its ``run.json`` as ``run``) is about to start.

    The drivers plugin loads required/optional drivers here; an
    implementation that raises aborts the start.
    """


@hookspec
def pvcore_container_status_changed(core: "Core", name: str, old: str, new: str) -> None:
    """Container ``name`` moved from status ``old`` to ``new``."""


@hookspec
def pvcore_revision_status_changed(core: "Core", rev: str, status: str) -> None:
    """The aggregate status of the running revision changed (``READY`` …)."""


# ---------------------------------------------------------------------------
# Daemons, drivers, power
# ---------------------------------------------------------------------------


@hookspec
def pvcore_daemons(core: "Core") -> Sequence[Any]:
    """Daemons to supervise.

    :return: :class:`pvcore.services.DaemonSpec` objects (name, argv, env).
        The daemons plugin runs them as supervised process groups.
    """


@hookspec(firstresult=True)
def pvcore_daemon_control(core: "Core", name: str, action: str) -> Optional[bool]:
    """Start or stop daemon ``name`` (``action`` is ``start``/``stop``/``restart``). *firstresult*

    :return: ``True`` when done, ``None`` when no such daemon exists.
    """


@hookspec
def pvcore_xconnect_reconcile(core: "Core") -> None:
    """Ask ``pv-xconnect`` to reconcile the service graph now."""


@hookspec(firstresult=True)
def pvcore_driver_loader(core: "Core") -> Any:
    """The module loader for drivers. *firstresult*

    :return: an object with ``load(module, args) -> bool`` and
        ``unload(module) -> bool``. The default runs ``modprobe``; the demo
        device's records calls without touching the kernel.
    """


@hookspec(firstresult=True)
def pvcore_power_backend(core: "Core") -> Any:
    """How the device reboots and powers off. *firstresult*

    :return: an object with ``reboot(message)`` and ``poweroff(message)``.
    """


# ---------------------------------------------------------------------------
# Metadata, configuration, commands, activity
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def pvcore_user_meta(core: "Core") -> Optional[Mapping[str, str]]:
    """The current user metadata, key to value. *firstresult*"""


@hookspec(firstresult=True)
def pvcore_set_device_meta(core: "Core", key: str, value: Optional[str]) -> Optional[bool]:
    """Store (or delete, with ``value=None``) a device metadata key. *firstresult*"""


@hookspec
def pvcore_meta_changed(core: "Core", kind: str, key: str, value: Optional[str]) -> None:
    """A metadata key changed.

    :param kind: ``"user"`` or ``"device"``.
    :param value: the new value, ``None`` when the key was deleted.
    """


@hookspec(firstresult=True)
def pvcore_config_get(core: "Core", key: str) -> Any:
    """Current value of configuration entry ``key`` (canonical or alias). *firstresult*"""


@hookspec(firstresult=True)
def pvcore_config_set(core: "Core", key: str, value: Any, level: str) -> Optional[bool]:
    """Override configuration entry ``key`` at ``level`` (``"command"`` …). *firstresult*"""


@hookspec
def pvcore_command(core: "Core", op: str, payload: str) -> Optional[bool]:
    """Carry out one accepted ``/commands`` op.

    Fired from the commands plugin's worker thread, one op at a time.
    :return: ``True`` if this plugin did (part of) the work; an op nobody
        handles is logged as ``command_unhandled``.
    """


@hookspec
def pvcore_event(core: "Core", event: "Event") -> None:
    """A device event was published (:meth:`pvcore.app.Core.publish`).

    :param event: a :class:`pvcore.events.Event` (id, time, type, subject,
        data). Every plugin that owns state publishes its changes; this is the
        one hook to follow them (the ``/_pvcore/events`` stream is one
        listener). Implementations run in the publisher's thread, serialised,
        in id order: be quick, never block, never raise.
    """


@hookspec
def pvcore_activity(core: "Core", name: str, active: bool) -> None:
    """A device activity started (``active=True``) or ended.

    Names: ``update`` (revision transition), ``devmeta``/``usrmeta``
    (metadata written), ``shutdown`` (poweroff/reboot), ``boot``. Power
    management (wakelocks) listens to these.
    """
