"""The :class:`Core`: everything the plugins share, kept beside the Falcon app.

It holds the settings, the plugin manager, the stash, the process groups and
the route table; it starts and stops the plugins' services, numbers and
delivers events, and calls other plugins' contracts (:meth:`Core.call`).
Building it starts nothing (:func:`pvcore.app.build_core`); gunicorn calls
:meth:`Core.start` from ``post_worker_init`` (see ``pvcore/gunicorn_conf.py``).
"""
from __future__ import annotations

import fcntl
import os
import re
import sys
import threading
from typing import Any, Dict, List, Mapping, Optional

import structlog

from pvcore import caller as caller_mod, names
from pvcore.boot import collect_services, reason
from pvcore.ctrlsockets import CallerSockets
from pvcore.errors import StartupError
from pvcore.events import Event, EventCounter
from pvcore.listeners import Listeners
from pvcore.routing import Route
from pvcore.settings import Settings
from pvcore.supervisor import ProcessGroups

log = structlog.get_logger(__name__)

_PLUGIN_DIR_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

#: Longest a publisher waits for another thread to deliver its event (seconds).
EVENT_DELIVERY_WAIT = 5.0


class Core:
    """Everything the plugins share, kept beside the Falcon app.

    :ivar settings: resolved :class:`pvcore.settings.Settings`.
    :ivar pm: the pluggy plugin manager; ``hook`` is ``pm.hook``.
    :ivar stash: per-plugin state under :class:`StashKey` keys.
    :ivar supervisor: :class:`pvcore.supervisor.ProcessGroups` for child processes.
    :ivar sockets: :class:`pvcore.ctrlsockets.CallerSockets`, each container's own
        pv-ctrl socket (a runtime opens one per start).
    :ivar routes: the route table, for introspection.
    :ivar app: the Falcon WSGI app.
    """

    def __init__(self, settings: Settings, pm):
        self.settings = settings
        self.pm = pm
        self.hook = pm.hook
        self.stash: Dict[Any, Any] = {}
        self.supervisor = ProcessGroups(os.path.join(settings.run_dir, "pgroups"), cgroups=settings.cgroups)
        self.sockets = CallerSockets(os.path.join(settings.run_dir, "ctrl"), settings.socket_path)
        self.routes: Dict[str, Route] = {}
        self.caller_cache = caller_mod.CallerCache()
        self._events = EventCounter()
        #: what each plugin owns (pvcore/ownership.py), collected by build_core
        self.ownership = None
        self.listeners = Listeners(pm, None)
        self.app = None  # the falcon.App, set by build_core
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
                self.sockets.sweep()
                services = collect_services(self)
                for service, owner in services:
                    # NOTE: listed before it starts: a start that fails or is
                    # interrupted (SIGINT raises SystemExit in this thread)
                    # may already have spawned children, and stop() ends them.
                    started.append(service)
                    try:
                        service.start()
                    except Exception as exc:
                        log.debug("service_start_failed", service=service.name, plugin=owner, exc_info=True)
                        raise StartupError(f"plugin {owner}: service {service.name} failed to start: "
                                           f"{reason(exc)}") from None
                    log.info("service_started", service=service.name)
            except BaseException:
                self._stop_services(started)
                self.supervisor.close()  # and whatever a stop could not know of
                self.sockets.close_all()
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
            self.sockets.close_all()
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
            if names.classify(self.pm, hook_name) != "absent":
                raise names.UnknownHook(names.unknown_message(self.pm, hook_name))
            return default
        result = caller(core=self, **kwargs)
        return default if result is None else result
