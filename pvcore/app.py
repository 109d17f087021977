"""Assembling the Falcon app from plugins, and the :class:`Core` beside it.

:func:`build_core` is pure: it reads settings and files but starts no thread
and no process. Background work starts in :meth:`Core.start`, which gunicorn
calls from ``post_worker_init`` (see ``pvcore/gunicorn_conf.py``).
"""
from __future__ import annotations

import fcntl
import itertools
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Generic, List, Mapping, Optional, Tuple, TypeVar

import falcon
import structlog
from falcon.routing import map_http_methods

from pvcore import caller as caller_mod
from pvcore.body import drain, dumps
from pvcore.errors import BadRequest, PvError, StartupError
from pvcore.events import Event, EventCounter
from pvcore.listeners import Listeners
from pvcore.log import LOG_FIELDS, bind_request
from pvcore.settings import Settings, SettingsError
from pvcore.supervisor import ProcessGroups

log = structlog.get_logger(__name__)

T = TypeVar("T")

_PLUGIN_DIR_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

#: Methods libevent admits; anything else is a framework-level 501 (docs/protocol.md §1).
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD")


class StashKey(Generic[T]):
    """A typed key into ``core.stash``: ``STATE = StashKey[ObjectStore]()``."""

    __slots__ = ()


@dataclass
class Route:
    """One route as the core registered it: who owns which method."""

    template: str
    methods: Dict[str, str] = field(default_factory=dict)  # method -> plugin name
    resources: Dict[str, Any] = field(default_factory=dict)  # method -> resource
    suffix: Optional[str] = None
    mgmt: Dict[str, bool] = field(default_factory=dict)  # method -> needs the mgmt role

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


class MethodMux:
    """Serves one URI template whose methods come from different plugins."""

    def __init__(self, route: Route):
        self._route = route
        for method, resource in route.resources.items():
            name = "on_" + method.lower()
            if route.suffix:
                name += "_" + route.suffix
            setattr(self, "on_" + method.lower(), getattr(resource, name))


#: Longest a publisher waits for another thread to deliver its event (seconds).
EVENT_DELIVERY_WAIT = 5.0


class Core:
    """Everything the plugins share, kept beside the Falcon app.

    :ivar settings: resolved :class:`pvcore.settings.Settings`.
    :ivar pm: the pluggy plugin manager; ``hook`` is ``pm.hook``.
    :ivar stash: per-plugin state under :class:`StashKey` keys.
    :ivar supervisor: :class:`pvcore.supervisor.ProcessGroups` for child processes.
    :ivar routes: the route table, for introspection.
    :ivar app: the Falcon WSGI app.
    """

    def __init__(self, settings: Settings, pm):
        self.settings = settings
        self.pm = pm
        self.hook = pm.hook
        self.stash: Dict[Any, Any] = {}
        self.supervisor = ProcessGroups(os.path.join(settings.run_dir, "pgroups"), cgroups=settings.cgroups)
        self.routes: Dict[str, Route] = {}
        self.caller_cache = caller_mod.CallerCache()
        self._events = EventCounter()
        #: what each plugin owns (pvcore/ownership.py), collected by build_core
        self.ownership = None
        self.listeners = Listeners(pm, None)
        self.app: Optional[falcon.App] = None
        self._services: List[Any] = []
        self._state_lock = threading.Lock()
        self._lock_fd: Optional[int] = None
        self.started = False

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        """Start every plugin service, in priority order.

        Takes an exclusive lock on ``<run_dir>/supervisor.lock`` first: during
        a gunicorn reload the new worker waits here until the old one has
        stopped its children, so there is never more than one supervisor.

        :raises StartupError: a plugin's ``pvcore_services`` failed or gave
            something that is not a service, or a service failed to start
            (one line naming the plugin; what started is stopped again).
        """
        with self._state_lock:
            if self.started:
                return
            self._take_lock()
            started = []
            try:
                self.supervisor.kill_leftovers()
                services = _collect_services(self)
                for service, owner in services:
                    try:
                        service.start()
                    except Exception as exc:
                        log.debug("service_start_failed", service=service.name, plugin=owner, exc_info=True)
                        raise StartupError(f"plugin {owner}: service {service.name} failed to start: "
                                           f"{_reason(exc)}") from None
                    started.append(service)
                    log.info("service_started", service=service.name)
            except BaseException:
                self._stop_services(started)
                self._release_lock()
                raise
            self._services = started
            self.started = True

    def stop(self) -> None:
        """Stop services in reverse order, then fire ``pvcore_shutdown``.

        Safe to call twice, or without :meth:`start`.
        """
        with self._state_lock:
            services, self._services = self._services, []
            was_started, self.started = self.started, False
            self._stop_services(services)
            if was_started:
                self.hook.pvcore_shutdown(core=self)
                self.supervisor.close()
            self._release_lock()

    def _stop_services(self, services) -> None:
        for service in reversed(services):
            try:
                service.stop()
                log.info("service_stopped", service=service.name)
            except Exception:
                log.exception("service_stop_failed", service=service.name)

    def _take_lock(self) -> None:
        os.makedirs(self.settings.run_dir, exist_ok=True)
        fd = os.open(os.path.join(self.settings.run_dir, "supervisor.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    # -- helpers for plugins --------------------------------------------------

    def data_dir(self, plugin: str) -> str:
        """The folder plugin ``plugin`` keeps its files in, created on first call:
        ``<storage_dir>/pvcore/<plugin>``.

        Pantavisor's own layout (``objects/``, ``trails/``, ``config/`` …)
        belongs to the plugins that implement it; anything else a plugin
        persists goes here, so two plugins never share a file name and a
        factory reset of pvcore's extras is one ``rm -r``. Call it from
        ``pvcore_startup``. See docs/plugins.md, "Where a plugin keeps files".

        :param plugin: the plugin's name (its entry-point name by convention).
        :raises ValueError: ``plugin`` is not a plain name (``/``, ``..``).
        """
        if not _PLUGIN_DIR_NAME.match(plugin or ""):
            raise ValueError(f"not a plugin name: {plugin!r}")
        path = os.path.join(self.settings.storage_dir, "pvcore", plugin)
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def publish(self, type: str, subject: str, data: Optional[Mapping[str, Any]] = None) -> Event:
        """Publish a device event: number it, then fire ``pvcore_event``.

        Call it after the state change is visible to readers, from the plugin
        that owns the state. Listeners get one event at a time, in id order;
        they must be quick and must not raise.

        Delivery never runs under a lock: the thread that finds nobody
        delivering delivers every pending event — its own, and those
        published meanwhile by a listener or by another thread. A listener
        that publishes returns at once (its event follows the current one).
        Another thread waits until its event has been delivered, so that
        when ``publish`` returns every listener has seen it: a client whose
        ``PUT /user-meta`` was answered reads the new value in ``/config``
        (docs/architecture.md §3). Publish after releasing your own locks;
        the wait is bounded (``EVENT_DELIVERY_WAIT``) in case a listener
        waits for one anyway.
        """
        if self.ownership is not None:
            self.ownership.check_publish(type, sys._getframe(1).f_globals.get("__name__"))
        events = self._events
        me = threading.get_ident()
        with events.lock:
            event = events.make(type, subject, data or {})
            events.pending.append(event)
            if events.delivering:
                if events.deliverer != me and not events.delivered_cond.wait_for(
                        lambda: events.delivered >= event.id, EVENT_DELIVERY_WAIT):
                    log.warning("event_delivery_slow", type=type, subject=subject, id=event.id)
                return event
            events.delivering, events.deliverer = True, me
        while True:
            with events.lock:
                if not events.pending:
                    events.delivering, events.deliverer = False, None
                    return event
                current = events.pending.popleft()
            try:
                self.listeners.deliver(self, current)
            except Exception:  # a listener's bug must not stall every later event
                log.exception("event_listener_failed", type=current.type, subject=current.subject)
            with events.lock:
                events.delivered = current.id
                events.delivered_cond.notify_all()

    @property
    def first_event_id(self) -> int:
        """The id of this worker's first event; earlier ids are from earlier workers."""
        return self._events.first

    def call(self, hook_name: str, default: Any = None, **kwargs: Any) -> Any:
        """Call another plugin's contract hook ``hook_name`` with ``core=self``.

        The way to use a contract whose owner may be missing (disabled with
        ``PVCORE_DISABLE_PLUGINS``, or not installed): a contract exists only
        while its owner is loaded (:func:`pvcore.hookspecs.pvcore_addhooks`).

        :return: the hook's answer; ``default`` when the hook's owner is
            absent (blocked, or installed but not loaded) or a *firstresult*
            hook got no answer.
        :raises pvcore.names.UnknownHook: no loaded or known-but-absent owner
            declares ``hook_name`` (a misspelling; the closest hook is named).

        Grep ``hook_name`` to find its documented spec in the owner's
        ``hookspecs.py`` (docs/architecture.md §3).
        """
        caller = getattr(self.hook, hook_name, None)
        if caller is None or caller.spec is None:
            from pvcore import names  # NOTE: only on this rare path (owner absent)

            if names.classify(self.pm, hook_name) != "absent":
                raise names.UnknownHook(names.unknown_message(self.pm, hook_name))
            return default
        result = caller(core=self, **kwargs)
        return default if result is None else result


# ---------------------------------------------------------------------------
# Errors, rendered in one place
# ---------------------------------------------------------------------------


def render_error(resp, status: int, message: str, headers=None) -> None:
    """Put the contract's ``{"Error":"<message>"}`` body on ``resp``."""
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = dumps({"Error": message})
    resp.stream = None
    for name, value in (headers or {}).items():
        resp.set_header(name, value)


def _unknown_endpoint(req) -> str:
    return "unknown endpoint: " + req.env.get("RAW_URI", req.relative_uri)


def _closes(headers) -> bool:
    return any(name.lower() == "connection" and value.lower() == "close" for name, value in headers.items())


def _on_pv_error(req, resp, ex: PvError, params) -> None:
    # An error that closes the connection leaves the body unread: it was
    # refused on its headers alone (docs/protocol.md §1).
    if not _closes(ex.headers):
        drain(req)
    render_error(resp, ex.status, ex.message, ex.headers)


def _on_http_error(req, resp, ex: falcon.HTTPError, params) -> None:
    drain(req)
    if isinstance(ex, falcon.HTTPRouteNotFound):
        if req.method not in HTTP_METHODS:
            _on_framework_error(req, resp, ex, params)  # see Access
        else:
            render_error(resp, 400, _unknown_endpoint(req))
    elif isinstance(ex, falcon.HTTPMethodNotAllowed):
        render_error(resp, 400, METHOD_NOT_SUPPORTED)
    else:
        render_error(resp, ex.status_code, ex.description or ex.title, ex.headers)


def _on_exception(req, resp, ex: Exception, params) -> None:
    # NOTE: Falcon's default handler writes a text traceback to wsgi.errors,
    # which gunicorn sends straight to stderr; we want one JSON event instead.
    log.exception("unhandled_error", method=req.method, path=req.path)
    render_error(resp, 500, "Internal error")


METHOD_NOT_SUPPORTED = "Method not supported for this endpoint"
PATH_NOT_UTF8 = "Request path is not valid UTF-8"


# ---------------------------------------------------------------------------
# Middleware
# ---------------------------------------------------------------------------


class RequestContext:
    """Names each request and hands its fields to the logs.

    The id is the client's ``X-Request-ID`` if it sent one, else
    ``<worker pid>-<counter>`` in hex; it is echoed in the response header.
    ``request_id``, ``method``, ``path`` (and ``caller``, added by
    :class:`Access`) go on every event logged while the request is served
    (:func:`pvcore.log.bind_request`) and, through ``environ``, on gunicorn's
    access line (:mod:`pvcore.accesslog`).
    """

    def __init__(self):
        # NOTE: next() on itertools.count is atomic under the GIL; gthread
        # serves requests from several threads.
        self._counter = itertools.count(1)
        self._prefix = f"{os.getpid():x}-"

    def process_request(self, req, resp):
        env = req.env
        request_id = env.get("HTTP_X_REQUEST_ID") or f"{self._prefix}{next(self._counter):x}"
        req.context.request_id = request_id
        fields = {"request_id": request_id, "method": req.method, "path": req.path}
        env[LOG_FIELDS] = fields
        bind_request(fields)
        # Set now rather than in process_response: error handlers keep it.
        resp.set_header("X-Request-ID", request_id)


class Access:
    """Caller identification and the check order of docs/protocol.md §2, §4.3:
    unknown caller → 500, wrong method → 400, not mgmt → 403.

    A method outside :data:`HTTP_METHODS` (``PATCH``) is libevent's framework
    501, except on a templated route: upstream's router sees those before
    libevent's method check and answers its own 400 ``Method not supported``.
    """

    def __init__(self, core: Core):
        self._core = core

    def process_request(self, req, resp):
        # Names in paths (revisions, meta keys, objects) must be valid UTF-8:
        # Falcon would decode %FF%FE and %FE%FF alike to U+FFFD and let two
        # different names collide on one revision or key (docs/protocol.md §1).
        try:
            req.env.get("PATH_INFO", "").encode("iso-8859-1").decode("utf-8")
        except UnicodeError:
            raise BadRequest(PATH_NOT_UTF8) from None

    def process_resource(self, req, resp, resource, params):
        # NOTE: Falcon calls this only for a path it routed; anything else
        # becomes HTTPRouteNotFound (see _on_http_error).
        route = self._core.routes[req.uri_template]
        if req.method not in HTTP_METHODS and not route.templated:
            drain(req)
            raise _FrameworkError()
        caller = caller_mod.identify(self._core, req.env)
        if caller is None:
            raise PvError("Internal error, unknown caller" if route.templated else "Internal Error", 500)
        req.context.caller = caller
        req.env[LOG_FIELDS]["caller"] = caller.name
        if req.method not in route.resources:
            raise PvError(METHOD_NOT_SUPPORTED, 400)
        if route.needs_mgmt(req.method) and not caller.privileged:
            raise PvError(
                "Request not sent from mgmt platform" if route.templated else "Request not sent from a mgmt platform",
                403,
            )


class _FrameworkError(Exception):
    """libevent's own error page (docs/protocol.md §3.3), e.g. for PATCH."""


def _on_framework_error(req, resp, ex, params) -> None:
    resp.status = 501
    resp.content_type = "text/html"
    resp.data = b'{"Error": "Unsupported protocol"}'
    resp.set_header("Connection", "close")


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------


def _call_impl(impl, **kwargs):
    return impl.function(*[kwargs[name] for name in impl.argnames])


def plugin_label(pm, plugin) -> str:
    # NOTE: imported here: pvcore.plugins registers core plugins that import this module.
    from pvcore.plugins import plugin_label as label

    return label(pm, plugin)


def _reason(exc: BaseException) -> str:
    # A StartupError a plugin raised on purpose already says what is wrong.
    return str(exc) if isinstance(exc, StartupError) else f"{type(exc).__name__}: {exc}"


def _boot_error(pm, plugin, what: str, exc: BaseException) -> StartupError:
    """One line naming ``plugin``; the traceback goes to the debug log only."""
    label = plugin_label(pm, plugin)
    log.debug("plugin_boot_error", plugin=label, step=what, exc_info=exc)
    return StartupError(f"plugin {label}: {what}: {_reason(exc)}")


def _blame(pm, hook_name: str, exc: BaseException):
    """The plugin whose implementation of ``hook_name`` raised ``exc``."""
    impls = {getattr(impl.function, "__code__", None): impl.plugin
             for impl in getattr(pm.hook, hook_name).get_hookimpls()}
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in impls:
            return impls[tb.tb_frame.f_code]
        tb = tb.tb_next
    return None


def _call_hook_at_boot(pm, hook_name: str, **kwargs) -> None:
    """Fire a broadcast hook; a plugin that raises becomes a one-line StartupError."""
    try:
        getattr(pm.hook, hook_name)(**kwargs)
    except Exception as exc:
        plugin = _blame(pm, hook_name, exc)
        if plugin is None:
            raise
        raise _boot_error(pm, plugin, f"{hook_name} raised", exc) from None


def _declare_plugin_settings(settings: Settings, pm) -> None:
    for impl in reversed(pm.hook.pvcore_declare_settings.get_hookimpls()):
        try:
            declared = _call_impl(impl) or ()
            if isinstance(declared, (str, bytes)) or not hasattr(declared, "__iter__"):
                raise StartupError(f"pvcore_declare_settings must return a list of Setting, not {declared!r}")
            settings.declare(declared, owner=pm.get_name(impl.plugin))
        except SettingsError as exc:
            raise _boot_error(pm, impl.plugin, "settings", StartupError(str(exc))) from None
        except Exception as exc:
            raise _boot_error(pm, impl.plugin, "pvcore_declare_settings", exc) from None
    try:
        settings.check_file()
    except SettingsError as exc:
        raise StartupError(str(exc)) from None


def _collect_services(core: Core) -> List[Tuple[Any, str]]:
    """Every plugin's services with the label of the plugin that gave it,
    in start order (priority, then hook order)."""
    pm = core.pm
    services: List[Tuple[Any, str]] = []
    for impl in reversed(pm.hook.pvcore_services.get_hookimpls()):
        owner = plugin_label(pm, impl.plugin)
        try:
            group = _call_impl(impl, core=core) or ()
            for service in group:
                for attr in ("start", "stop"):
                    if not callable(getattr(service, attr, None)):
                        raise StartupError(f"{service!r} has no {attr}() (see pvcore.services.Service)")
                if not isinstance(getattr(service, "name", None), str):
                    raise StartupError(f"{service!r} has no name")
                if not isinstance(getattr(service, "priority", 100), int):
                    raise StartupError(f"service {service.name}: priority must be an int")
                services.append((service, owner))
        except Exception as exc:
            raise _boot_error(pm, impl.plugin, "pvcore_services", exc) from None
    services.sort(key=lambda pair: getattr(pair[0], "priority", 100))
    return services


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


def _collect_routes(core: Core) -> Dict[str, Route]:
    """Gather every plugin's routes; a template+method claimed twice fails the boot."""
    pm = core.pm
    table: Dict[str, Route] = {}
    shapes: Dict[Tuple[str, ...], str] = {}
    # NOTE: pluggy calls implementations in reverse of get_hookimpls() (last
    # registered first); walk them in that same order.
    for impl in reversed(pm.hook.pvcore_routes.get_hookimpls()):
        owner = plugin_label(pm, impl.plugin)
        try:
            result = _call_impl(impl, core=core) or ()
        except Exception as exc:
            raise _boot_error(pm, impl.plugin, "pvcore_routes raised", exc) from None
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
                route.methods[method] = owner
                route.resources[method] = resource
    return table


def declare_ownership(core: Core) -> None:
    """Collect what each plugin owns (pvcore/ownership.py) and check the hook names
    plugins use (pvcore/names.py); events then go to their subscribers only."""
    from pvcore import names, ownership  # NOTE: here: both import plugins' labels from this module

    pm = core.pm
    core.ownership = ownership.collect(pm, lambda plugin: pm.get_name(plugin))
    core.listeners = Listeners(pm, core.ownership)
    names.check(pm)


def build_core(settings: Settings, pm) -> Core:
    """Build the :class:`Core` and its Falcon app from ``settings`` and ``pm``.

    Fires ``pvcore_declare_settings``, ``pvcore_declare_ownership``,
    ``pvcore_startup`` and ``pvcore_routes``. Starts nothing.

    :raises StartupError: any plugin mistake (a hook that raises, a malformed
        answer, a setting or route clash), as one line naming the plugin and
        its distribution; the traceback is logged at debug level.
    """
    _declare_plugin_settings(settings, pm)
    for path in (settings.storage_dir, settings.run_dir):
        os.makedirs(path, exist_ok=True)
    core = Core(settings, pm)
    declare_ownership(core)
    _call_hook_at_boot(pm, "pvcore_startup", core=core)
    core.routes = _collect_routes(core)

    app = falcon.App(middleware=[RequestContext(), Access(core)])
    app.req_options.strip_url_path_trailing_slash = False  # /steps/ is not /steps (docs/protocol.md §2)
    app.resp_options.secure_cookies_by_default = False
    app.add_error_handler(Exception, _on_exception)
    app.add_error_handler(falcon.HTTPError, _on_http_error)
    app.add_error_handler(PvError, _on_pv_error)
    app.add_error_handler(_FrameworkError, _on_framework_error)
    for route in core.routes.values():
        resources = set(map(id, route.resources.values()))
        resource = next(iter(route.resources.values())) if len(resources) == 1 else MethodMux(route)
        kwargs = {"suffix": route.suffix} if route.suffix and len(resources) == 1 else {}
        try:
            app.add_route(route.template, resource, **kwargs)
        except Exception as exc:  # e.g. a field name Falcon refuses
            owners = ", ".join(sorted(set(route.methods.values())))
            raise StartupError(f"plugin {owners}: route {route.template}: {_reason(exc)}") from None
    core.app = app
    return core


def create_app(settings: Settings, pm) -> falcon.App:
    """The Falcon app alone (see :func:`build_core`)."""
    return build_core(settings, pm).app
