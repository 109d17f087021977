"""gunicorn configuration for pvcore (``gunicorn -c python:pvcore.gunicorn_conf``).

One worker holds all device state and the one process supervisor, so there
is exactly one worker; concurrency comes from gthread's threads. Plugin
services start in ``post_worker_init`` and stop in ``worker_exit``, inside the
worker: the master only manages the worker.

Everything is read from ``PVCORE_*`` environment variables so the same file
serves ``make run``, the tests and a device.
"""
import os
import sys

from pvcore.log import logconfig_dict, unbind_request
from pvcore.settings import Settings, SettingsError

try:
    _settings = Settings()
except SettingsError as _exc:
    # One line, not gunicorn's "Failed to read config file" and a traceback.
    sys.stderr.write(f"pvcore cannot boot: {_exc}\n")
    sys.exit(1)

# PVCORE_WSGI_APP lets `make bench` serve its bare baseline app with this very
# configuration; plugin services only run for pvcore's own app.
wsgi_app = os.environ.get("PVCORE_WSGI_APP", "pvcore.wsgi:app")
_PVCORE_APP = wsgi_app == "pvcore.wsgi:app"
bind = "unix:" + os.path.abspath(_settings.socket_path)
# The socket comes out 0660: the owner and the service's group may connect.
umask = 0o117
workers = 1
worker_class = "pvcore.worker.PvThreadWorker"  # gthread + pv-ctrl shims
if not _PVCORE_APP:
    # `make bench` also serves its bare baseline on gunicorn's own gthread worker.
    worker_class = os.environ.get("PVCORE_BENCH_WORKER_CLASS", worker_class)
# At most caller_threads of them per caller (pvcore/connections.py).
threads = _settings.threads
preload_app = False
max_requests = 0
timeout = 30
graceful_timeout = 30
keepalive = 5
# Access lines are `http_request` events with fields, at a level that keeps
# routine reads out of an info-level log (pvcore/accesslog.py).
logger_class = "pvcore.accesslog.AccessLogger"
accesslog = "-"
errorlog = "-"
logconfig_dict = logconfig_dict(_settings.log_format, _settings.log_level)
control_socket_disable = True
proc_name = "pvcore"


def on_starting(server):
    os.makedirs(os.path.dirname(os.path.abspath(_settings.socket_path)), exist_ok=True)


def post_worker_init(worker):
    if _PVCORE_APP:
        # NOTE: the same module object gunicorn imported for the app.
        from pvcore.caller import HOST, connection_key, container_key
        from pvcore.errors import StartupError
        from pvcore.wsgi import BootFailed, core

        # Each container's own socket is accepted on by this worker (pvcore/ctrlsockets.py).
        core.sockets.attach(worker.add_listener, worker.remove_listener)
        try:
            core.start()
        except StartupError as exc:
            raise BootFailed(exc) from None
        # Per-caller caps count callers as the app identifies them; the host has threads of its own.
        worker.caller_key = lambda sock: connection_key(core, sock)
        worker.container_key = lambda name: container_key(core, name)
        worker.host_key = HOST


def post_request(worker, req, environ, resp):
    # After the access line: whatever this thread logs next is not this request's.
    unbind_request()


def worker_exit(server, worker):
    # The app may have failed to load, in which case there is nothing to stop.
    wsgi = sys.modules.get("pvcore.wsgi")
    if _PVCORE_APP and getattr(wsgi, "core", None) is not None:
        wsgi.core.stop()
