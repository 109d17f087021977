"""The revision store contract, owned by pv_steps (docs/architecture.md §3).

pv_steps holds the revisions ("steps") under ``<storage>/trails``: their
state JSON, progress, commit messages and the boot record (which revision
runs, which is committed, which is being tried). Only pv_steps writes them:
it carries out the revision transitions itself (``pv_commands_run``). Others
read through these hooks; pv_steps publishes ``revision.running`` when the
running revision changes. A revision's state is interpreted once, here, into
the model :func:`pv_steps_revision` returns (docs/architecture.md §3).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import pluggy

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from pvcore.app import Core

hookspec = pluggy.HookspecMarker("pvcore")


@hookspec(firstresult=True)
def pv_steps_running_revision(core: "Core") -> Optional[str]:
    """Name of the running revision (``"0"``, ``"locals/x"``). *firstresult*"""


@hookspec(firstresult=True)
def pv_steps_revision(core: "Core", rev: str) -> Optional[Any]:
    """Revision ``rev`` as the one typed model every plugin reads. *firstresult*

    pv_steps parses and validates a state JSON once and interprets it once
    (:mod:`pv_steps.model`); nobody else reads the JSON. Instances are
    immutable and shared (cached per state file: a rewritten local revision
    is a new instance): read attributes, never change them. JSON documents
    in it are frozen: objects are read-only mappings, arrays are tuples.

    :param rev: a revision name; ``"current"`` means the running one.
    :return: a ``Revision``, or ``None`` when the revision does not exist or
        its JSON cannot be parsed.

    ``Revision``:

    ``rev`` (str)
        The concrete revision name (``"0"``, ``"locals/x"``; never ``current``).
    ``spec`` (str or None)
        The state's ``#spec``.
    ``groups`` (tuple of ``Group``)
        In start order; the built-in ``data``, ``root``, ``platform``, ``app``
        when the state declares none (then ``default_groups`` is true).
    ``containers`` (read-only mapping name → ``Container``)
        In state order (every ``<folder>/run.json`` but the BSP's).
    ``objects`` (read-only mapping state key → sha256)
        Every top-level key whose value is an object's sha256.
    ``bsp`` (mapping or None)
        ``bsp/run.json``.
    ``drivers`` (mapping or None)
        ``bsp/drivers.json``, the BSP's driver manifest.
    ``system_digest`` (str)
        Changes whenever a state key no container owns changes (the root keys,
        the BSP, ``_config/`` of no container): a reboot transition.
    ``group(name)`` → ``Group`` or None; ``members(group_name)`` → its
    containers in state order; ``shas()`` → every referenced sha256 once,
    sorted; ``driver_aliases(fitconfig="")`` → alias → tuple of module
    strings (``all``, overridden by ``fitconfig:<fitconfig>``).

    ``Group``: ``name``, ``status_goal`` (``MOUNTED``, ``STARTED`` or
    ``READY``), ``restart_policy`` (``system`` or ``container``), ``timeout``
    (seconds; ``None`` when the state sets none: ``PV_UPDATER_GOALS_TIMEOUT``
    then applies), ``recovery`` (``Recovery`` or None).

    ``Container``:

    ``name`` (str)
        Its one name: the folder, which run.json's ``name`` must equal
        (``PUT /steps`` refuses a state where they differ).
    ``folder`` (str)
        The state folder holding its files (equal to ``name`` in every state
        ``PUT /steps`` accepts).
    ``group`` (str)
        Its group's name: run.json's ``group`` (or ``runlevel``), else the
        default assignment (first unassigned → ``root``, then ``platform``;
        with declared groups, the last one).
    ``status_goal``, ``restart_policy`` (str)
        run.json's, else its group's.
    ``roles`` (tuple of str)
        ``("mgmt",)`` or ``()``; no ``roles`` key means mgmt.
    ``recovery`` (``Recovery`` or None)
        run.json's own ``auto_recovery``; the engine falls back to the group's.
    ``run`` (read-only mapping)
        Its run.json, frozen.
    ``objects`` (read-only mapping file → sha256)
        The objects in its folder, by file name (``root.squashfs``,
        ``lxc.container.conf``).
    ``config`` (str or None)
        run.json's ``config``: the file (in ``objects``) holding its LXC config.
    ``drivers`` (tuple of ``(alias, TYPE)``)
        The driver aliases it references, TYPE ``REQUIRED``, ``OPTIONAL`` or
        ``MANUAL``, in that order.
    ``exports`` (tuple of mappings)
        The named services of its ``services.json``.
    ``requirements`` (tuple of mappings)
        run.json's ``services.required`` then ``services.optional`` entries
        (each with a ``name``).
    ``digest`` (str)
        Changes whenever a state key it owns changes (``LOCAL_APPLY``
        restarts only containers whose digest changed).
    ``configs`` (read-only mapping path → str or bytes)
        Its configuration overlay, the state's ``_config/<name>/<path>`` keys
        by ``<path>`` (relative, never ``..``): an object's sha256, or the
        file's bytes when the state holds a JSON document inline. Runtimes lay
        these files over the container's root (docs/protocol.md §D2.5).

    ``Recovery``: ``policy``, ``max_retries``, ``retry_delay``,
    ``backoff_factor``, ``reset_window``, ``stable_timeout`` (numbers),
    ``backoff_policy`` (``"reboot"``, ``"never"`` or seconds), ``recovers``
    (only ``always`` and ``on-failure`` restart), ``delay(attempt)``.
    """


@hookspec(firstresult=True)
def pv_steps_install_factory(core: "Core", state_json: bytes) -> Optional[bool]:
    """Make ``state_json`` the factory revision ``0`` of a device that has no
    revision yet, as its factory image's first start leaves it: running,
    committed, progress ``DONE`` ``Factory revision`` (docs/protocol.md §D1.4);
    its containers are loaded as at boot. *firstresult*

    How the demo device gets its factory revision without writing into
    ``<storage>/trails`` itself. Store its objects first
    (``pv_objects_store``); call it before the core starts.

    :return: ``True`` when installed; ``False`` when the device already has
        a revision (nothing is changed).
    :raises ValueError: the state JSON is not one ``PUT /steps`` would accept.
    :raises RuntimeError: the core has started already.
    """
