"""Testing pvcore and its plugins: a pytest plugin (``pytest_plugins = ["pvcore.testing"]``).

Fixtures:

* ``make_core(plugins=[...], overrides={...}, load_entrypoints=False)`` – a
  :class:`pvcore.app.Core` with just the plugins you name, storage and run
  dirs in a fresh temp dir. Nothing is started unless you call
  ``core.start()`` (it is stopped for you at teardown).
* ``make_client(core, pid=None)`` – Falcon's test client for that core; the
  request appears to come from process ``pid`` (default: this process, i.e.
  the host ``_pv_``).
* ``start_gunicorn(env={...}, demo=False, plugins=[...])`` – a **real
  gunicorn** with the session's plugins (and the entry points ``plugins``
  names) on a temp Unix socket; returns a :class:`GunicornServer` whose
  ``client()`` speaks HTTP/1.1 over the socket.
* ``demo_device`` – one real gunicorn running the demo device, shared by a
  test module; at teardown it fails the module if any request ended in an
  ``unhandled_error`` (bad input must never become a 500).
* ``log_output`` – structlog events captured as a list of dicts.
* ``pvcore_plugins`` – the session's plugin set: the entry points named by the
  ini option ``pvcore_plugins`` (``*``, the default: every installed one).
  Name your set, so that whatever else is installed never changes your
  results: pvcore's own suite names its built-ins in ``setup.cfg``.

``pytest --fixtures`` shows each fixture's signature. The markers ``gunicorn``
and ``slow`` are registered by this plugin (``pytest_configure``).

Also importable: :class:`ContainerCaller` (a plugin making every request
come from one container), :func:`write_revision` (a device's storage with a
revision of your own), :class:`UnixHTTPConnection`, :func:`raw_request`,
:func:`wait_until`, :class:`StreamReader` (a client of a streaming endpoint,
``/_pvcore/events`` or ``/_pvcore/logs/<name>?follow=1``).
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
from typing import Any, Iterable, Mapping, Optional, Sequence

import falcon.testing
import pytest
import structlog

from pvcore import hookimpl
from pvcore.app import Core, build_core
from pvcore.fsutil import atomic_write
from pvcore.plugins import get_plugin_manager
from pvcore.settings import Settings
from pvcore.testserver import (  # noqa: F401 - re-exported: tests import them from here
    GunicornServer,
    StreamReader,
    UnixHTTPConnection,
    child_pids,
    raw_request,
    returns_within,
    short_tempdir,
    wait_until,
)


def write_revision(storage_dir: str, state: Mapping[str, Any], rev: str = "0") -> str:
    """Lay down revision ``rev`` with ``state`` as a booted, committed one.

    Writes ``trails/<rev>/.pvr/json``, a DONE progress, ``.pv/done`` and every
    inline JSON value as its file (docs/protocol.md §D1.2); points
    ``trails/current`` at it unless it already points somewhere. Start a
    server on ``storage_dir`` afterwards to run a device of your own design.
    """
    trail = os.path.join(storage_dir, "trails", rev)
    os.makedirs(os.path.join(trail, ".pv"), exist_ok=True)
    os.makedirs(os.path.join(trail, ".pvr"), exist_ok=True)
    atomic_write(os.path.join(trail, ".pvr", "json"), json.dumps(state))
    atomic_write(os.path.join(trail, ".pv", "progress"),
                 '{"status":"DONE","status-msg":"Factory revision","progress":100,"retries":0}')
    atomic_write(os.path.join(trail, ".pv", "done"), b"")
    for key, value in state.items():
        if isinstance(value, (dict, list)):
            os.makedirs(os.path.dirname(os.path.join(trail, key)), exist_ok=True)
            atomic_write(os.path.join(trail, key), json.dumps(value))
    current = os.path.join(storage_dir, "trails", "current")
    if not os.path.lexists(current):
        os.symlink(rev, current)
    return trail



# ---------------------------------------------------------------------------
# In-process apps
# ---------------------------------------------------------------------------


class PvTestClient(falcon.testing.TestClient):
    """Falcon's test client, with requests coming from peer pid ``pid``."""

    def __init__(self, core: Core, pid: Optional[int] = None):
        super().__init__(core.app)
        self.core = core
        self.pid = os.getpid() if pid is None else pid

    def simulate_request(self, *args, **kwargs):
        extras = dict(kwargs.pop("extras", None) or {})
        extras.setdefault("pvcore.peer_pid", self.pid)
        return super().simulate_request(*args, extras=extras, **kwargs)


class ContainerCaller:
    """A plugin: every request comes from container ``name`` with ``roles``.

    ``make_core(plugins=[my_plugin, ContainerCaller("app", roles=[])])`` tests
    how a non-mgmt container is treated; ``roles=None`` makes the caller unknown.
    """

    def __init__(self, name: str, roles: Optional[Sequence[str]] = ("mgmt",)):
        self.name = name
        self.roles = roles

    @hookimpl(tryfirst=True)
    def pvcore_identify_caller(self, core, pid):
        return self.name

    @hookimpl(tryfirst=True)
    def pvcore_caller_roles(self, core, name):
        return list(self.roles) if name == self.name and self.roles is not None else None


def pytest_addoption(parser):
    parser.addini("pvcore_plugins", type="args", default=["*"],
                  help="pvcore entry-point plugins the test kit loads (make_core(load_entrypoints=True), "
                       "start_gunicorn, demo_device); '*' (the default): every installed one")


def plugin_set(config) -> Optional[list]:
    """The ``pvcore_plugins`` ini option: entry-point names, or ``None`` for every installed one."""
    names = list(config.getini("pvcore_plugins"))
    return None if names in ([], ["*"]) else names


@pytest.fixture(name="pvcore_plugins", scope="session")
def _pvcore_plugins_fixture(pytestconfig):
    """The session's plugin set (``pvcore_plugins`` ini option): entry-point
    names, or ``None`` when every installed plugin loads."""
    return plugin_set(pytestconfig)


def pytest_configure(config):
    # The kit's markers are registered here, so a plugin's own test suite can
    # use --strict-markers without copying them into its configuration.
    config.addinivalue_line("markers", "gunicorn: starts a real gunicorn on a temporary Unix socket")
    config.addinivalue_line("markers", "slow: long-running form of a test (make test-long)")


class StandInContracts:
    """Declares the contracts that a test's fakes implement while their owner is absent.

    A fake standing in for pv_steps implements ``pv_steps_revision``
    without pv_steps being loaded, so nobody declared that hook. Registered
    last, this plugin's ``pvcore_addhooks`` finds every hook that has
    implementations but no spec, imports the owner's ``hookspecs`` module
    (the hook name's prefix: ``pv_steps_…`` → ``pv_steps.hookspecs``) and
    declares the hooks it lacks, so the fakes are validated against the real
    contract. :func:`make_core` registers it.
    """

    @hookimpl
    def pvcore_addhooks(self, pluginmanager):
        self._pm = pluginmanager
        missing = {name for name, caller in vars(pluginmanager.hook).items()
                   if getattr(caller, "spec", True) is None and name.startswith("pv_")}
        for module in sorted({self._owner(name) for name in missing} - {None}):
            specs = importlib.import_module(module + ".hookspecs")
            found = {name: staticmethod(getattr(specs, name)) for name in dir(specs) if name in missing}
            if found:  # a misspelled name is no spec: the boot check names it
                pluginmanager.add_hookspecs(type("Specs", (), found))

    @hookimpl
    def pvcore_declare_ownership(self):
        # Stand-in owner of the event types an absent installed plugin
        # declares, so a test may publish them for its fakes (docs/plugins.md).
        from pvcore.names import installed_plugins
        from pvcore.ownership import Owns

        pm = self._pm
        taken = set()
        for impl in pm.hook.pvcore_declare_ownership.get_hookimpls():
            if impl.plugin is not self:
                taken.update((impl.function() or Owns()).events)
        events, caller_events, health, facts = {}, [], {}, {}
        for name in sorted(installed_plugins()):
            if pm.has_plugin(name) or pm.is_blocked(name):
                continue
            try:
                declare = getattr(importlib.import_module(name), "pvcore_declare_ownership", None)
            except ImportError:
                continue
            owns = declare() if declare is not None else None
            if owns is None:
                continue
            mine = {kind: f"stand-in for {name}" for kind in owns.events if kind not in taken}
            events.update(mine)
            caller_events += [kind for kind in owns.caller_events if kind in mine]
            health.update({field: kind for field, kind in owns.health.items() if kind in mine})
            facts.update({key: fact for key, fact in owns.device_meta.items()
                          if getattr(fact, "event", None) in mine})
        return Owns(events=events, caller_events=caller_events, health=health, device_meta=facts)

    @staticmethod
    def _owner(hook_name: str) -> Optional[str]:
        parts = hook_name.split("_")
        for end in range(2, len(parts)):
            module = "_".join(parts[:end])
            try:
                importlib.import_module(module + ".hookspecs")
            except ImportError:
                continue
            return module
        return None


@pytest.fixture(name="make_core")
def _make_core_fixture(pvcore_plugins):
    """make_core(plugins=(), overrides=None, load_entrypoints=False, disabled=()) -> pvcore.app.Core

    A Core with exactly ``plugins`` (modules, objects or ``(name, plugin)``
    pairs; the core's caller and introspection plugins are always there),
    storage and run dirs in a fresh temp dir, settings from ``overrides``
    only (the environment is ignored), with the demo device's values (a
    laptop: process runtime, pretend power) unless ``demo=False``.
    ``load_entrypoints=True`` adds the session's entry-point plugins: those
    the ``pvcore_plugins`` ini option names (default ``*``, every installed
    one); ``disabled`` blocks plugins by name. Nothing runs until
    you call ``core.start()``; every core is stopped and its dirs removed at
    teardown. A plugin mistake raises pvcore.errors.StartupError.
    """
    cores = []
    dirs = []

    def make_core(
        plugins: Sequence = (),
        overrides: Optional[Mapping[str, Any]] = None,
        load_entrypoints: bool = False,
        disabled: Iterable[str] = (),
    ) -> Core:
        base = short_tempdir()
        dirs.append(base)
        # A laptop, not a device: the demo's values (process runtime, pretend
        # power, drivers dry-run), never its seeded revision.
        values = {"demo": True, "storage_dir": os.path.join(base, "storage"), "run_dir": os.path.join(base, "run")}
        values.update(overrides or {})
        pm = get_plugin_manager(load_entrypoints=load_entrypoints, plugins=[*plugins, StandInContracts()],
                                disabled=disabled, only=pvcore_plugins)
        core = build_core(Settings(values, env={}), pm)
        cores.append(core)
        return core

    yield make_core
    for core in reversed(cores):
        core.stop()
    for base in dirs:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(name="make_client")
def _make_client_fixture():
    """make_client(core, pid=None) -> PvTestClient (a falcon.testing.TestClient)

    In-process requests to ``core.app``: ``simulate_get("/x")``,
    ``simulate_put(path, body=...)``, ``.status_code``, ``.json``, ``.text``.
    Requests come from process ``pid`` (default: the test process, which the
    core identifies as the host ``_pv_``, privileged); use
    ``pvcore.testing.ContainerCaller`` to act as a container.
    """
    def make_client(core: Core, pid: Optional[int] = None) -> PvTestClient:
        return PvTestClient(core, pid)

    return make_client


@pytest.fixture(name="log_output")
def _log_output_fixture():
    """The structlog events logged during the test, as a list of dicts
    (``event``, ``log_level`` and the key-value data)."""
    capture = structlog.testing.LogCapture()
    structlog.configure(processors=[capture])
    yield capture.entries
    structlog.reset_defaults()


def _with_plugins(env: Mapping[str, str], session: Optional[list], extra: Sequence[str] = ()) -> dict:
    """``env`` naming the server's plugins (``PVCORE_PLUGINS``): the session's set and ``extra``."""
    env = dict(env)
    if session is not None:
        env.setdefault("PVCORE_PLUGINS", ",".join(dict.fromkeys([*session, *extra])))
    return env


@pytest.fixture(name="demo_device", scope="module")
def _demo_device_fixture(pytestconfig):
    """A GunicornServer running the demo device, shared by the test module.

    The session's plugins (``pvcore_plugins``), a real gunicorn on a temp Unix socket:
    ``demo_device.request(method, path, body=None, headers=None)`` ->
    ``(status, headers, body_bytes)``, ``.client()`` for a keep-alive
    connection, ``.log_events()``. At teardown the module fails if any request
    ended in an ``unhandled_error`` (bad input must never become a 500).
    """
    server = GunicornServer(short_tempdir(), _with_plugins({"PVCORE_DEMO": "1"}, plugin_set(pytestconfig)))
    server.start()
    yield server
    try:
        server.stop()
        errors = [e for e in server.log_events() if e.get("event") == "unhandled_error"]
        assert errors == [], f"requests ended in unhandled errors: {errors}"
    finally:
        shutil.rmtree(server.base, ignore_errors=True)


@pytest.fixture(name="start_gunicorn")
def _start_gunicorn_fixture(pvcore_plugins):
    """start_gunicorn(env=None, demo=False, timeout=30.0, base=None, plugins=()) -> GunicornServer

    A real gunicorn with the session's plugins (the ``pvcore_plugins`` ini
    option, default every installed one) and the entry points named in
    ``plugins`` on a temp Unix socket, started
    and healthy (``/_pvcore/health``) when it returns; ``env`` adds
    ``PVCORE_*`` variables, ``demo=True`` seeds the demo device, ``base``
    reuses a directory (storage, run dir, gunicorn.log) to restart on the same
    device. ``server.request()``, ``.client()``, ``.worker_pid()``,
    ``.log_events()``, ``.stop()``. Stopped and removed at teardown; a server
    that fails to boot raises AssertionError with the end of its log.
    """
    servers = []

    def start_gunicorn(env: Optional[Mapping[str, str]] = None, demo: bool = False, timeout: float = 30.0,
                       base: Optional[str] = None, plugins: Sequence[str] = ()) -> GunicornServer:
        env = _with_plugins(env or {}, pvcore_plugins, plugins)
        if demo:
            env.setdefault("PVCORE_DEMO", "1")
        server = GunicornServer(base or short_tempdir(), env)
        servers.append(server)
        return server.start(timeout)

    yield start_gunicorn
    for server in servers:
        try:
            server.stop()
        finally:
            shutil.rmtree(server.base, ignore_errors=True)
