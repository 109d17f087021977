"""pvcore: Pantavisor's pv-ctrl control socket as a Falcon app with pluggy plugins.

A plugin is any module or object with functions marked ``@hookimpl`` and named
after a spec in :mod:`pvcore.hookspecs`; it is found through the ``pvcore``
entry-point group::

    [options.entry_points]
    pvcore =
        wakelocks = pvcore_wakelocks

A plugin that owns a contract of its own declares its hooks with
:data:`hookspec` (docs/plugins.md, "A contract of your own").

Importing this package has no side effects: it only defines the markers.
"""
__all__ = ["hookimpl", "hookspec"]


def __getattr__(name):
    # PERF: the markers are made on first use, so tools that never touch
    # plugins (the pvcontrol CLI) do not pay for importing pluggy.
    if name == "hookimpl":
        import pluggy

        #: Marker for hook implementations, e.g. ``@hookimpl def pvcore_routes(core): ...``
        marker = globals()["hookimpl"] = pluggy.HookimplMarker("pvcore")
        return marker
    if name == "hookspec":
        import pluggy

        #: Marker for the hooks of a contract a plugin owns (docs/plugins.md), as the
        #: core's own (pvcore/hookspecs.py): pluggy tells markers apart by project name only.
        marker = globals()["hookspec"] = pluggy.HookspecMarker("pvcore")
        return marker
    raise AttributeError(f"module 'pvcore' has no attribute {name!r}")
