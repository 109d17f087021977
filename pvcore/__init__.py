"""pvcore: Pantavisor's pv-ctrl control socket as a Falcon app with pluggy plugins.

A plugin is any module or object with functions marked ``@hookimpl`` and named
after a spec in :mod:`pvcore.hookspecs`; it is found through the ``pvcore``
entry-point group::

    [options.entry_points]
    pvcore =
        wakelocks = pvcore_wakelocks

Importing this package has no side effects: it only defines the marker.
"""
import pluggy

__all__ = ["hookimpl"]

#: Marker for hook implementations, e.g. ``@hookimpl def pvcore_routes(core): ...``
hookimpl = pluggy.HookimplMarker("pvcore")
