"""pvcore: Pantavisor's pv-ctrl control socket as a Falcon app with pluggy plugins.

A plugin is any module or object with functions marked ``@hookimpl`` and named
after a spec in :mod:`pvcore.hookspecs`; it is found through the ``pvcore``
entry-point group::

    [options.entry_points]
    pvcore =
        wakelocks = pvcore_wakelocks

Importing this package has no side effects: it only defines the marker.
"""
__all__ = ["hookimpl"]


def __getattr__(name):
    # PERF: the marker is made on first use, so tools that never touch
    # plugins (the pvcontrol CLI) do not pay for importing pluggy.
    if name == "hookimpl":
        import pluggy

        #: Marker for hook implementations, e.g. ``@hookimpl def pvcore_routes(core): ...``
        marker = globals()["hookimpl"] = pluggy.HookimplMarker("pvcore")
        return marker
    raise AttributeError(f"module 'pvcore' has no attribute {name!r}")
