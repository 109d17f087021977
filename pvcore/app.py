"""Assembling the Falcon app from plugins: middleware, error pages, :func:`build_core`.

:func:`build_core` is pure: it reads settings and files but starts no thread
and no process. Background work starts in :meth:`pvcore.core.Core.start`,
which gunicorn calls from ``post_worker_init`` (see ``pvcore/gunicorn_conf.py``).
The core's other concerns live beside it: the :class:`~pvcore.core.Core`
(``pvcore/core.py``), the route table (``pvcore/routing.py``), calling plugins
at boot (``pvcore/boot.py``) and the stash keys (``pvcore/stash.py``).
"""
from __future__ import annotations

import itertools
import os

import falcon
import structlog

from pvcore import caller as caller_mod, ownership
from pvcore.body import UNREAD, drain, dumps
from pvcore.boot import call_hook_at_boot, declare_plugin_settings, reason
from pvcore.core import Core
from pvcore.errors import BadRequest, PvError, StartupError
from pvcore.log import LOG_FIELDS, bind_request
from pvcore.routing import HTTP_METHODS, MethodMux, Route, collect_routes, mgmt_of, requires_mgmt, takes_query
from pvcore.settings import Settings
from pvcore.stash import StashKey

# NOTE: Core, Route, StashKey, mgmt_of and requires_mgmt stay importable from
# here: plugins written against earlier releases import them from pvcore.app.
__all__ = ["Core", "Route", "StashKey", "build_core", "create_app", "mgmt_of", "render_error", "requires_mgmt",
           "takes_query"]

log = structlog.get_logger(__name__)


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
    # refused on its headers alone (docs/protocol.md §1). Otherwise only a
    # small body is drained; a larger one closes the connection too (body.drain).
    if not _closes(ex.headers):
        drain(req)
    render_error(resp, ex.status, ex.message, ex.headers)


def _on_http_error(req, resp, ex: falcon.HTTPError, params) -> None:
    drain(req)  # small bodies only (see _on_pv_error)
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
NAME_QUERY = "Request has a query string or fragment in a name"
UNKNOWN_QUERY = "Request has an unknown query parameter"


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

    def process_response(self, req, resp, resource, req_succeeded):
        # A body left unread (pvcore.body.drain) cannot be followed by another
        # request: close rather than read it in this thread.
        if req.env.get(UNREAD):
            resp.set_header("Connection", "close")


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
        if route.templated:
            _check_query(req.env, route.query.get(req.method, frozenset()))


def _check_query(env, allowed) -> None:
    """A name ends where the client's path ends: a query string or fragment on a
    templated route is refused unless the responder takes those parameters
    (:func:`pvcore.routing.takes_query`; docs/protocol.md §2)."""
    raw = env.get("RAW_URI")  # gunicorn's: the request target as sent
    if raw is not None and "#" in raw:
        raise BadRequest(NAME_QUERY)
    if env.get("QUERY_STRING") or (raw is not None and "?" in raw):
        names = {part.partition("=")[0] for part in env.get("QUERY_STRING", "").split("&") if part}
        if not allowed:
            raise BadRequest(NAME_QUERY)
        if not names <= allowed:
            raise BadRequest(UNKNOWN_QUERY)


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


def build_core(settings: Settings, pm) -> Core:
    """Build the :class:`Core` and its Falcon app from ``settings`` and ``pm``.

    Fires ``pvcore_declare_settings``, ``pvcore_declare_ownership``,
    ``pvcore_startup`` and ``pvcore_routes``. Starts nothing.

    :raises StartupError: any plugin mistake (a hook that raises, a malformed
        answer, a setting or route clash), as one line naming the plugin and
        its distribution; the traceback is logged at debug level.
    """
    declare_plugin_settings(settings, pm)
    for path in (settings.storage_dir, settings.run_dir):
        os.makedirs(path, exist_ok=True)
    core = Core(settings, pm)
    ownership.declare(core)
    call_hook_at_boot(pm, "pvcore_startup", core=core)
    core.routes = collect_routes(core)

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
            raise StartupError(f"plugin {owners}: route {route.template}: {reason(exc)}") from None
    core.app = app
    return core


def create_app(settings: Settings, pm) -> falcon.App:
    """The Falcon app alone (see :func:`build_core`)."""
    return build_core(settings, pm).app
