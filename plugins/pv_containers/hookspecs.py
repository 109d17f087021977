"""The container engine contract, owned by pv_containers (docs/architecture.md §3).

pv_containers runs the containers of the running revision: their status
machine, restart policies, groups and pids are its state, changed only by
the engine. Whoever owns revisions hands it the revision to run at boot
(:func:`pv_containers_load`) and each later one
(:func:`pv_containers_run_revision`); the engine never asks for one, so it
depends on no other plugin; power management stops everything
(:func:`pv_containers_stop`). Status changes are published as
``container.status``, ``group.status`` and ``revision.status`` events.

How a container becomes a running thing is the *runtime*'s business
(:func:`pv_containers_runtime`): the built-in one runs a supervised process
group, a runtime plugin (LXC) returns its own object with the same methods.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import pluggy

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from pvcore.app import Core

hookspec = pluggy.HookspecMarker("pvcore")


@hookspec(firstresult=True)
def pv_containers_runtime(core: "Core") -> Any:
    """The runtime that starts container processes. *firstresult*

    Asked once, when the engine's service starts; ``None`` fails the start.
    The built-in process runtime (:class:`pv_containers.runtime.ProcessRuntime`)
    is ``trylast``. A runtime keeps a container's ``revision`` and ``permanent``
    storage under ``<storage>/disks/`` and its console under
    ``<storage>/logs/<rev>/<c>/console.log``: the engine owns those paths
    (docs/architecture.md §2.1) and deletes a revision's when pv_steps
    announces it collected; the runtime's own files go under its plugin's
    declared paths or ``core.data_dir()``.
    The returned object has these methods; their names and meaning are the
    contract a runtime plugin implements:

    ``start(container) -> handle``
        Start the container and return an opaque handle. ``container`` is a
        :class:`pv_containers.model.Container`; read ``name``, ``rev`` (the
        revision), ``run`` (its run.json, a read-only mapping), ``group.name``,
        ``roles`` and ``spec`` (the revision model's container, documented at
        ``pv_steps_revision``: its ``objects``, ``config``, ``folder``). Raise to report a failed start (the engine treats it like
        a crash).
    ``stop(handle, timeout)``
        Stop it: ask politely, force it after ``timeout`` seconds. Must
        return within about ``timeout`` seconds and leave nothing behind.
    ``pid(handle) -> int``
        The container's init pid (the leader of its process tree).
    ``poll(handle) -> int or None``
        ``None`` while it runs, else its exit status (negative for a
        signal). Called often from the engine's loop: must not block. Once it
        returned a status the handle is dead; the engine never uses it again.
    ``cgroups(handle) -> list of str`` (optional)
        The cgroups holding the container's processes, as
        ``"<controllers>:<path>"`` (:class:`pvcore.cgroups.CgroupRef`); callers
        in them, or below them, are this container. Without it, callers are
        matched by process ancestry only.

    The ``container_runtime`` setting names the runtime; each runtime's
    plugin answers only for its own name.
    """


@hookspec(firstresult=True)
def pv_containers_load(core: "Core", revision: Any, goals_timeout: Optional[float] = None) -> Optional[bool]:
    """The revision running at boot: bring it up once the engine's service runs. *firstresult*

    Handed over by the owner of revisions while the app is built; nothing
    starts before :meth:`pvcore.app.Core.start`. Ignored when a revision is
    already loaded.

    :param revision: the revision model, as ``pv_steps_revision`` returns it
        (the engine reads its groups and containers, never the state JSON).
    :param goals_timeout: seconds a container of a group whose state sets no
        ``timeout`` has, from each start, to reach its status goal
        (``PV_UPDATER_GOALS_TIMEOUT``; 120 when ``None``). At boot a timer that
        runs out lets the next group start.
    :return: ``True`` once loaded.
    """


@hookspec(firstresult=True)
def pv_containers_run_revision(
    core: "Core", revision: Any, only_changed: bool = False, timeout: Optional[float] = None
) -> Optional[tuple]:
    """Stop the running containers and bring up ``revision``. *firstresult*

    :param revision: the revision model, as ``pv_steps_revision`` returns it.
    :param only_changed: restart only containers whose definition changed
        (a non-reboot transition, ``LOCAL_APPLY``); the others keep running.
    :param timeout: the status-goal timeout of groups whose state sets none
        (``PV_UPDATER_GOALS_TIMEOUT``); each container's timer is armed at its
        start from its group's ``timeout``.
    :return: ``(ok, message)``: ``(True, "")`` once every goal is reached;
        ``"Status goal not reached"`` when a container's timer ran out;
        ``"A container could not be started"`` when one failed to start,
        died without recovery or used up its ``max_retries``. The pair
        also has a ``detail`` attribute (``""`` when ok): which container,
        and why — the runtime's start error, the exit status — for the
        progress ``logs``.
    """


@hookspec(firstresult=True)
def pv_containers_stability_pending(core: "Core") -> Optional[Sequence[str]]:
    """Containers of the running revision still inside their stability window. *firstresult*

    Those with an ``auto_recovery`` ``stable_timeout`` that have not yet stayed
    at their status goal that long since their last start, and neither used
    up their retries nor were stopped by a user. The owner of revisions holds
    an update's commit while any are (docs/protocol.md §D3.2).
    """


@hookspec(firstresult=True)
def pv_containers_stop(core: "Core", timeout: Optional[float] = None) -> Optional[bool]:
    """Stop every container in reverse group order (poweroff, reboot). *firstresult*"""


@hookspec(firstresult=True)
def pv_containers_pids(core: "Core") -> Optional[Mapping[str, int]]:
    """Init pid of each container of the running revision (-1 if not running). *firstresult*"""


@hookspec(firstresult=True)
def pv_containers_signal(core: "Core", name: str, type: str, payload: str) -> Optional[bool]:
    """Deliver a ``/signal`` sent by container ``name``. *firstresult*

    :return: ``True`` if accepted, ``False`` if not expected from that
        container (the endpoint then answers 500, docs/protocol.md §7.9).
    """


@hookspec(firstresult=True)
def pv_containers_groups(core: "Core") -> Optional[Sequence[Mapping[str, Any]]]:
    """The groups of the running revision as ``GET /groups`` objects. *firstresult*"""


@hookspec
def pv_containers_starting(core: "Core", name: str, run: Mapping[str, Any], container: Any) -> None:
    """Container ``name`` is about to start.

    :param run: its run.json (read-only).
    :param container: its container in the revision model (``pv_steps_revision``:
        ``drivers``, ``objects``, ``roles`` …).

    Whatever a container needs before it starts (kernel drivers) is prepared
    here; an implementation that raises aborts the start, which the engine
    then treats like a crash.
    """
