"""``/_pvcore/health``, ``/_pvcore/plugins`` and ``/_pvcore/settings``: pvcore's own extras.

They live outside the pv-ctrl namespace so no upstream client ever meets them.
"""
from __future__ import annotations

from pvcore import hookimpl
from pvcore.stash import StashKey
from pvcore.body import dumps
from pvcore.ownership import Owns

#: ``{field: subject}`` of the last event of each type plugins named in their
#: declaration's ``health`` (pv_steps: ``revision``, the running revision).
HEALTH: StashKey[dict] = StashKey()


class Health:
    """``GET /_pvcore/health``: is the worker up, are its services running."""

    mgmt = False

    def __init__(self, core):
        self._core = core

    def on_get(self, req, resp):
        core = self._core
        fields = {field: None for field in (core.ownership.health if core.ownership else ())}
        fields.update(core.stash.get(HEALTH, {}))
        resp.data = dumps({
            "status": "ok" if core.started else "starting",
            "services": [service.name for service in core._services],
            **fields,
            "events": {"delivered": core.listeners.events, "listener_calls": core.listeners.calls},
        })


class Plugins:
    """``GET /_pvcore/plugins``: each plugin, its version, hooks and routes."""

    def __init__(self, core):
        self._core = core

    def on_get(self, req, resp):
        resp.data = dumps(describe_plugins(self._core))


class SettingsList:
    """``GET /_pvcore/settings``: every setting, core and plugin, with its
    value, where the value came from, its default and help; secrets masked."""

    def __init__(self, core):
        self._core = core

    def on_get(self, req, resp):
        resp.data = dumps(self._core.settings.describe())


def describe_plugins(core) -> list:
    """One entry per registered plugin: name, distribution, version, hooks, routes."""
    pm = core.pm
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    result = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:  # blocked
            continue
        dist = dists.get(id(plugin))
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
        routes = sorted(
            f"{method} {route.template}"
            for route in core.routes.values()
            for method, owner in route.methods.items()
            if owner.split(" (")[0] == name
        )
        result.append({
            "name": name,
            "distribution": dist.project_name if dist else None,
            "version": dist.version if dist else None,
            "hooks": hooks,
            "routes": routes,
        })
    return result


@hookimpl
def pvcore_routes(core):
    return [
        ("/_pvcore/health", Health(core)),
        ("/_pvcore/plugins", Plugins(core)),
        ("/_pvcore/settings", SettingsList(core)),
    ]


@hookimpl
def pvcore_declare_ownership():
    return Owns(listens=lambda registry: sorted(set(registry.health.values())))


@hookimpl
def pvcore_event(core, event):
    health = core.stash.setdefault(HEALTH, {})
    for field, kind in core.ownership.health.items():
        if kind == event.type:
            health[field] = event.subject
