"""The route table: who owns which method of which URI template, and who may call it.

:func:`collect_routes` gathers every plugin's ``pvcore_routes`` answer at boot;
a template and method claimed twice fails the boot. :func:`requires_mgmt` and
:func:`mgmt_of` decide which methods need the mgmt role (docs/plugins.md,
"Who may call").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Mapping, Optional, Tuple

from falcon.routing import map_http_methods

from pvcore.boot import boot_error, call_impl
from pvcore.errors import StartupError
from pvcore.labels import plugin_label

#: Methods libevent admits; anything else is a framework-level 501 (docs/protocol.md §1).
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD")

@dataclass
class Route:
    """One route as the core registered it: who owns which method."""

    template: str
    methods: Dict[str, str] = field(default_factory=dict)  # method -> plugin name
    resources: Dict[str, Any] = field(default_factory=dict)  # method -> resource
    suffix: Optional[str] = None
    mgmt: Dict[str, bool] = field(default_factory=dict)  # method -> needs the mgmt role
    query: Dict[str, FrozenSet[str]] = field(default_factory=dict)  # method -> query params it takes

    @property
    def templated(self) -> bool:
        """Templated routes have their own error texts (docs/protocol.md §2, §4.3)."""
        return "{" in self.template

    def needs_mgmt(self, method: str) -> bool:
        """Whether ``method`` needs the mgmt role (see :func:`mgmt_of`)."""
        return self.mgmt.get(method, True)


def mgmt_of(resource: Any, method: str, responder: Any) -> bool:
    """Whether ``method`` on ``resource`` needs the mgmt role.

    First found wins: the responder's own ``mgmt`` attribute (set with
    :func:`requires_mgmt`), the resource's ``mgmt`` mapping (``{"GET": False}``; a
    method it leaves out needs mgmt), the resource's ``mgmt`` boolean; by
    default every method needs mgmt (docs/plugins.md, "Who may call").

    :raises ValueError: ``mgmt`` is neither a boolean nor a method mapping.
    """
    own = getattr(responder, "mgmt", None)
    if own is not None:
        if not isinstance(own, bool):
            raise ValueError(f"{method} responder's mgmt must be True or False, not {own!r}")
        return own
    value = getattr(resource, "mgmt", True)
    if isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(map(str, value)) - set(HTTP_METHODS))
        if unknown or not all(isinstance(v, bool) for v in value.values()):
            raise ValueError(f"mgmt must map methods ({', '.join(HTTP_METHODS)}) to True or False, not {value!r}")
        return value.get(method, True)
    raise ValueError(f"mgmt must be True, False or a mapping of methods, not {value!r}")


def requires_mgmt(required: bool):
    """Decorator for one responder: ``@requires_mgmt(False) def on_get(...)``
    lets containers without the mgmt role call that method only."""
    def mark(responder):
        responder.mgmt = bool(required)
        return responder
    return mark


def takes_query(*names: str):
    """Decorator for one responder: the query parameters it reads,
    ``@takes_query("tail", "follow") def on_get(...)``.

    On a templated route (a route whose path carries a name) a query string is
    otherwise refused with 400, as is a fragment always: cut off, it would
    make ``PUT /steps/locals/a?b`` store ``locals/a`` (docs/protocol.md §2).
    Exact routes ignore their query string, as upstream does.
    """
    if not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"query parameter names must be non-empty strings, not {names!r}")

    def mark(responder):
        responder.query = frozenset(names)
        return responder
    return mark


class MethodMux:
    """Serves one URI template whose methods come from different plugins."""

    def __init__(self, route: Route):
        self._route = route
        for method, resource in route.resources.items():
            name = "on_" + method.lower()
            if route.suffix:
                name += "_" + route.suffix
            setattr(self, "on_" + method.lower(), getattr(resource, name))

def _route_entries(result, owner: str):
    """Check one plugin's ``pvcore_routes`` answer; yield (template, resource, suffix)."""
    where = f"plugin {owner}: pvcore_routes"
    if isinstance(result, (str, bytes, Mapping)) or not hasattr(result, "__iter__"):
        raise StartupError(f"{where} must return a list of (uri_template, resource[, options]) tuples, "
                           f"not {result!r}")
    for entry in result:
        if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 3):
            raise StartupError(f"{where}: {entry!r} is not (uri_template, resource[, options])")
        template, resource = entry[0], entry[1]
        options = entry[2] if len(entry) > 2 else {}
        if not isinstance(template, str) or not template.startswith("/"):
            raise StartupError(f"{where}: uri_template must be a string starting with '/', not {template!r}")
        if not isinstance(options, Mapping) or set(options) - {"suffix"}:
            raise StartupError(f"{where}: route {template}: options may only be {{'suffix': ...}}, not {options!r}")
        if resource is None or isinstance(resource, type):
            raise StartupError(f"{where}: route {template}: the resource must be an instance, not {resource!r}")
        yield template, resource, options.get("suffix")


def collect_routes(core) -> Dict[str, Route]:
    """Gather every plugin's routes; a template+method claimed twice fails the boot."""
    pm = core.pm
    table: Dict[str, Route] = {}
    shapes: Dict[Tuple[str, ...], str] = {}
    # NOTE: pluggy calls implementations in reverse of get_hookimpls() (last
    # registered first); walk them in that same order.
    for impl in reversed(pm.hook.pvcore_routes.get_hookimpls()):
        owner = plugin_label(pm, impl.plugin)
        try:
            result = call_impl(impl, core=core) or ()
        except Exception as exc:
            raise boot_error(pm, impl.plugin, "pvcore_routes raised", exc) from None
        for template, resource, suffix in _route_entries(result, owner):
            shape = tuple("{}" if seg.startswith("{") else seg for seg in template.split("/"))
            if shape in shapes and shapes[shape] != template:
                raise StartupError(
                    f"route {template} ({owner}) has the same shape as {shapes[shape]}: use the same field names"
                )
            shapes[shape] = template
            route = table.setdefault(template, Route(template, suffix=suffix))
            methods = [m for m in map_http_methods(resource, suffix=suffix) if m in HTTP_METHODS]
            if not methods:
                raise StartupError(f"route {template} ({owner}) has no responder")
            for method in methods:
                if method in route.methods:
                    raise StartupError(
                        f"route {method} {template} is claimed by two plugins: {route.methods[method]} and {owner}"
                    )
                if route.suffix != suffix:
                    raise StartupError(f"route {template} ({owner}) mixes responder suffixes with {route.methods}")
                responder = getattr(resource, "on_" + method.lower() + (f"_{suffix}" if suffix else ""))
                try:
                    route.mgmt[method] = mgmt_of(resource, method, responder)
                except ValueError as exc:
                    raise StartupError(f"plugin {owner}: route {template}: {exc}") from None
                route.query[method] = frozenset(getattr(responder, "query", ()))
                route.methods[method] = owner
                route.resources[method] = resource
    return table
